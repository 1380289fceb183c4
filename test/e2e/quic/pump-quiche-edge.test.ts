// The connector's origin sockets pumped by the addon, the edge on quiche (see pump-suite.ts).
import { pumpSuite } from './pump-suite.js';

pumpSuite('quiche');
