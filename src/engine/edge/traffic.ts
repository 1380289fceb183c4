/**
 * Live traffic counters for the dashboard: requests and bytes per public hostname, and
 * failures by their RFC 9209 Proxy-Status error type. On-ramps bump plain numbers in a map
 * (made only when the dashboard runs: without it they hold no recorder and pay nothing);
 * the dashboard samples them once a second and turns the deltas into rates.
 */

/** A hostname beyond this many is counted under OTHER_HOSTS: the Host header is the client's to choose. */
const MAX_HOSTS = 256;
export const OTHER_HOSTS = '(other)';

export interface HostTraffic {
  requests: number;
  bytes: number;
}

export class TrafficRecorder {
  readonly hosts = new Map<string, HostTraffic>();
  readonly errors = new Map<string, number>();

  /** One request (or upgrade) answered for `host`, or `requests` of them: their bytes to and from the client. */
  http(host: string, bytes: number, requests = 1): void {
    let t = this.hosts.get(host);
    if (!t) {
      if (this.hosts.size >= MAX_HOSTS) host = OTHER_HOSTS;
      t = this.hosts.get(host);
      if (!t) this.hosts.set(host, (t = { requests: 0, bytes: 0 }));
    }
    t.requests += requests;
    t.bytes += bytes;
  }

  /** A failure answered with a `Proxy-Status: …; error=TYPE` (destination_not_found, …). */
  error(type: string): void {
    this.errors.set(type, (this.errors.get(type) ?? 0) + 1);
  }
}
