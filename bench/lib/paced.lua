-- wrk at an offered rate below saturation (bench/workers.js --rates): every connection waits a
-- random delay before each request, uniform over [lo, hi] ms (`wrk ... -s paced.lua URL -- lo hi`),
-- so C connections offer about C / (mean delay + latency) requests per second, spread in time
-- (requests arrive one at a time, as a paced load would send them, not in wrk's saturated bursts).
local lo, hi = 1, 1

function init(args)
  lo, hi = tonumber(args[1]), tonumber(args[2])
  -- Each thread has its own Lua state: seed each differently (a table's address).
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
end

function delay()
  return math.random(lo, hi)
end
