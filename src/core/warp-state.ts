import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeSecretFileAtomic } from './credentials.js';

/** What `warp connect` is doing, for `warp status`: written while it runs, removed when it stops. */
export interface WarpState {
  pid: number;
  vnetId: string;
  vnetName: string;
  routes: string[];
  tun: string;
  edge: string;
  /** The transport to a remote edge (`http2` or `quic`, what `--protocol auto` settled on); absent on the local on-ramp. */
  protocol?: string;
  since: string;
}

const file = (home: string) => join(home, 'warp.json');

export const writeWarpState = (home: string, state: WarpState): void => writeSecretFileAtomic(file(home), `${JSON.stringify(state, null, 2)}\n`);
export const clearWarpState = (home: string): void => rmSync(file(home), { force: true });

/** The state of a running `warp connect`, or undefined (none, or its process is gone). */
export function readWarpState(home: string): WarpState | undefined {
  let state: WarpState;
  try {
    state = JSON.parse(readFileSync(file(home), 'utf8')) as WarpState;
  } catch {
    return undefined;
  }
  try {
    process.kill(state.pid, 0);
    return state;
  } catch {
    return undefined;
  }
}
