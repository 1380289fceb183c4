/**
 * Hostname patterns as cloudflared's ingress rules and public hostnames write them: the
 * connector matches ingress rules with this, the edge matches public hostnames.
 */

/** `*.example.com` matches any subdomain of example.com, not example.com itself. */
export function matchHost(ruleHost: string, reqHost: string): boolean {
  if (ruleHost === reqHost) return true;
  return ruleHost.startsWith('*.') && reqHost.endsWith(ruleHost.slice(1));
}
