/**
 * The edge's network namespace: an unnamed namespace with a child for `ip` and client
 * sockets, the TCP upgrader (TUN + NAT + listener) and the TCP downgrader.
 */
export { UnnamedNetns, ERR_NETNS_CREATE, ERR_NETNS_CHILD, type UnnamedNetnsOptions } from './namespace.js';
export { TcpUpgrader, type UpgraderOptions, type UpgraderStats, type TunLinkOptions } from './upgrader.js';
export { TcpDowngrader, DowngradeSession, ERR_DOWNGRADE_EXHAUSTED, type DowngraderOptions, type DowngradeTarget, type DowngraderStats } from './downgrader.js';
