import { formatAddress, formatEndpoint } from '../../core/address.js';
import { TransportKind, type ParseResult } from './view.js';

const FLAG_LETTERS = 'FSRPAUEC';

/** One line for logs and test failures: `tcp 198.18.0.1:40000 > 198.18.2.3:80 [S] seq=1 len=0`. */
export function describePacket(result: ParseResult): string {
  if (!result.ok) return `malformed (${result.reason})`;
  const view = result;
  const n = view.addressLength;
  const fragment = view.isFragment ? ` frag off=${view.fragmentOffset}${view.moreFragments ? ' +' : ''}` : '';
  switch (view.transport) {
    case TransportKind.Tcp: {
      let flags = '';
      for (let bit = 0; bit < 8; bit++) if (view.tcpFlags & (1 << bit)) flags += FLAG_LETTERS[bit];
      return (
        `tcp ${formatEndpoint(view.buf, view.srcPort, view.srcOffset, n)} > ${formatEndpoint(view.buf, view.dstPort, view.dstOffset, n)}` +
        ` [${flags || '.'}] seq=${view.tcpSeq} ack=${view.tcpAck} win=${view.tcpWindow} len=${view.payloadLength}`
      );
    }
    case TransportKind.Udp:
      return `udp ${formatEndpoint(view.buf, view.srcPort, view.srcOffset, n)} > ${formatEndpoint(view.buf, view.dstPort, view.dstOffset, n)} len=${view.payloadLength}`;
    case TransportKind.Icmp: {
      const echo = view.isEcho ? ` id=${view.echoId} seq=${view.echoSeq}` : '';
      return `${view.protocolName} ${formatAddress(view.buf, view.srcOffset, n)} > ${formatAddress(view.buf, view.dstOffset, n)} type=${view.icmpType} code=${view.icmpCode}${echo}`;
    }
    default:
      return `${view.protocolName} ${formatAddress(view.buf, view.srcOffset, n)} > ${formatAddress(view.buf, view.dstOffset, n)}${fragment} len=${view.payloadLength}`;
  }
}
