// A/B switches are read on both sides: C++ (cpp/common.h EnvSwitchOn, e.g. OXY_FLOW_FIN_ON_DATA)
// and TS (`process.env.OXY_… !== '0'`, e.g. OXY_EDGE_PUMP). Both are on unless the value is exactly
// '0' (README and docs name every switch as `OXY_…=0`). C++ once took any value starting with '0' as
// off: `OXY_X=00` turned a C++ switch off and a TS one on.
import { afterEach, describe, expect, it } from 'vitest';
import { native, nativeAvailable } from '../../../src/engine/native/binding.js';

const NAME = 'OXY_TEST_ENV_SWITCH';
/** The rule of every TS switch. */
const tsSwitchOn = (name: string): boolean => process.env[name] !== '0';

describe.skipIf(!nativeAvailable())('a switch reads the same in C++ and in TS', () => {
  afterEach(() => {
    delete process.env[NAME];
  });

  it.each([
    ['unset', undefined, true],
    ['empty', '', true],
    ['0', '0', false],
    ['00', '00', true],
    ['0.5', '0.5', true],
    ['0 (a space after)', '0 ', true],
    ['off', 'off', true],
    ['false', 'false', true],
    ['1', '1', true],
  ] as [string, string | undefined, boolean][])('%s', (_what, value, on) => {
    if (value === undefined) delete process.env[NAME];
    else process.env[NAME] = value;
    expect(tsSwitchOn(NAME)).toBe(on);
    expect(native().envSwitchOn(NAME)).toBe(on);
  });
});
