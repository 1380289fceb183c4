// Cumulative GC time by kind, written to /tmp/gc-<pid>-<threadId>.json every 200 ms (a preload:
// worker threads load it too, each with its own heap and file).
const { PerformanceObserver, constants } = require('node:perf_hooks');
const fs = require('node:fs');
const { threadId } = require('node:worker_threads');
const t = { major: 0, minor: 0, incr: 0, weak: 0, nmajor: 0, nminor: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const k = e.detail?.kind ?? e.kind;
    if (k === constants.NODE_PERFORMANCE_GC_MAJOR) {
      t.major += e.duration;
      t.nmajor++;
    } else if (k === constants.NODE_PERFORMANCE_GC_MINOR) {
      t.minor += e.duration;
      t.nminor++;
    } else if (k === constants.NODE_PERFORMANCE_GC_INCREMENTAL) t.incr += e.duration;
    else t.weak += e.duration;
  }
}).observe({ entryTypes: ['gc'] });
const file = `/tmp/gc-${process.pid}-${threadId}.json`;
// Written whole (rename) so that a reader never sees half a file.
setInterval(() => (fs.writeFileSync(`${file}.tmp`, JSON.stringify(t)), fs.renameSync(`${file}.tmp`, file)), 200).unref();
