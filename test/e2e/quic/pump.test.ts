// The connector's origin sockets pumped by the addon, the edge on ngtcp2 (see pump-suite.ts).
import { pumpSuite } from './pump-suite.js';

pumpSuite('ngtcp2');
