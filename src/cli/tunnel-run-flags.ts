import { Flags } from '@oclif/core';
import { logFlags } from './log-flags.js';

/** Flags `tunnel run` and the quick tunnel share, with cloudflared's names. */
export const tunnelRunFlags = {
  protocol: Flags.option({ options: ['http2', 'quic', 'auto'] as const, default: 'auto', description: 'Protocol implementation to connect with the edge', env: 'TUNNEL_TRANSPORT_PROTOCOL' })(),
  edge: Flags.string({ description: 'HOST:PORT of the edge [default: from the token or credentials, else the local edge]', env: 'TUNNEL_EDGE' }),
  'edge-ca': Flags.string({ description: "PEM file of the edge's CA [default: the local edge's]" }),
  url: Flags.string({ description: 'Connect to the local webserver at URL', env: 'TUNNEL_URL' }),
  'hello-world': Flags.boolean({ description: 'Run Hello World Server', env: 'TUNNEL_HELLO_WORLD' }),
  'ha-connections': Flags.integer({ default: 4, min: 1, max: 16, description: 'Number of HA connections to the edge' }),
  'grace-period': Flags.string({ default: '30s', description: 'When oxyctl receives SIGINT/SIGTERM it waits this long for in-flight requests to finish', env: 'TUNNEL_GRACE_PERIOD' }),
  metrics: Flags.string({ default: '127.0.0.1:0', description: 'HOST:PORT of the metrics server (/metrics, /ready, /healthcheck)', env: 'TUNNEL_METRICS' }),
  ...logFlags,
};
