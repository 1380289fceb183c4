export * from './codes.js';
export * from './stream-header.js';
export * from './control.js';
export * from './registration.js';
export * from './datagram.js';
export { ChunkQueue } from './chunks.js';
