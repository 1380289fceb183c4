/**
 * The edge's network namespace: an unnamed namespace with a child for `ip` and client
 * sockets, the TCP upgrader (TUN + NAT + listener) and the TCP downgrader.
 */
export { UnnamedNetns, type UnnamedNetnsOptions } from './namespace.js';
export { TcpUpgrader, type UpgraderOptions, type UpgraderStats, type TunLinkOptions } from './upgrader.js';
export { TcpDowngrader, DowngradeSession, type DowngraderOptions, type DowngradeTarget, type DowngraderStats } from './downgrader.js';
