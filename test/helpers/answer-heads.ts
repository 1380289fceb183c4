// Answers with hostile or odd heads, and what each caller of the one head routine
// (cpp/http1-answer.cc) makes of them: the connector's FIN hold (ClosingAnswerWhole: held for the
// host's FIN or not) and the edge's answer framer (AnswerFramer: refused, or where the body ends).
// test/unit/protocol/http1-answer-hold.test.ts checks both on the routine itself,
// test/e2e/vnets/answer-hold-heads.test.ts the hold through a vnet.

export const ok = (head: string, body = 'hello') => `HTTP/1.1 200 OK\r\n${head}\r\n\r\n${body}`;

/** [name, answer, held by the connector's FIN hold, the edge's framing of it (frameAnswer to a GET)] */
export const HOSTILE_ANSWERS: [name: string, answer: string, held: boolean, framing: string][] = [
  ['Connection: close', ok('Content-Length: 5\r\nConnection: close'), true, 'whole'],
  ['Connection: keep-alive', ok('Content-Length: 5\r\nConnection: keep-alive'), false, 'whole'],
  ['Connection: keep-alive, close (a token list)', ok('Content-Length: 5\r\nConnection: keep-alive, close'), true, 'whole'],
  ['Connection: CLOSE (tokens are case-insensitive)', ok('Content-Length: 5\r\nConnection: CLOSE'), true, 'whole'],
  ['Connection: closed (not the token)', ok('Content-Length: 5\r\nConnection: closed'), false, 'whole'],
  ['Connection: x-close (not the token)', ok('Content-Length: 5\r\nConnection: x-close'), false, 'whole'],
  ['two Connection lines, close in the second', ok('Content-Length: 5\r\nConnection: keep-alive\r\nConnection: close'), true, 'whole'],
  [
    'duplicate Content-Length that disagree',
    ok('Content-Length: 3\r\nContent-Length: 5\r\nConnection: close'),
    false,
    'refused: bad Content-Length in a response',
  ],
  ['duplicate Content-Length that agree', ok('Content-Length: 5\r\nContent-Length: 5\r\nConnection: close'), true, 'whole'],
  ['Content-Length not digits', ok('Content-Length: +5\r\nConnection: close'), false, 'refused: bad Content-Length in a response'],
  [
    'Content-Length and chunked: chunked frames it',
    ok('Content-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close', '5\r\nhello\r\n0\r\n\r\n'),
    true,
    'whole',
  ],
  [
    'Content-Length and a coding that is not chunked: close-delimited',
    ok('Content-Length: 5\r\nTransfer-Encoding: gzip\r\nConnection: close'),
    false,
    'until the end, closes',
  ],
  ['chunked with trailers', ok('Transfer-Encoding: chunked\r\nConnection: close', '5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n'), true, 'whole'],
  ['chunked whose data ends in "0\\r\\n\\r\\n"', ok('Transfer-Encoding: chunked\r\nConnection: close', '9\r\nab0\r\n\r\n'), false, 'more to come'],
  ['chunked, a bad size line', ok('Transfer-Encoding: chunked\r\nConnection: close', 'zz\r\n0\r\n\r\n'), false, 'refused: bad chunk size in a response'],
  ['obs-fold (a line without a colon)', ok('Content-Length: 5\r\nX-A: a\r\n b\r\nConnection: close'), false, 'refused: obs-fold in a response'],
  // RFC 9112 §5.2: refused (it was read as a Connection header of its own: held, whole).
  ['obs-fold hiding the close', ok('Content-Length: 5\r\nX-A: a\r\n Connection: close'), false, 'refused: obs-fold in a response'],
  ['a header line without a name', ok('Content-Length: 5\r\n: x\r\nConnection: close'), false, 'refused: bad header line in a response'],
  ['a bad status line', 'HTTP/1.1 2000 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello', false, 'refused: bad status line in a response'],
  ['close-delimited (no length)', ok('Connection: close'), false, 'until the end, closes'],
  ['bytes after the answer', ok('Content-Length: 5\r\nConnection: close', 'helloHTTP/1.1 200 OK\r\n\r\n'), false, 'whole'],
  ['the body cut short', ok('Content-Length: 9\r\nConnection: close'), false, 'more to come'],
  ['an interim head first', `HTTP/1.1 100 Continue\r\n\r\n${ok('Content-Length: 5\r\nConnection: close')}`, true, 'whole'],
  ["an interim head's close only", `HTTP/1.1 100 Continue\r\nConnection: close\r\n\r\n${ok('Content-Length: 5')}`, false, 'whole'],
  ['204, no body', 'HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n', true, 'whole'],
  ['a head not yet whole', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n', false, 'more to come'],
  ['a huge header (60 KiB) in one read', ok(`X-Big: ${'a'.repeat(60 * 1024)}\r\nContent-Length: 5\r\nConnection: close`), true, 'whole'],
  [
    "a head past 64 KiB: a pump's read (64 KiB) holds only its start",
    ok(`X-Big: ${'a'.repeat(70 * 1024)}\r\nContent-Length: 5\r\nConnection: close`).slice(0, 64 * 1024),
    false,
    'more to come',
  ],
  ['not HTTP', 'SSH-2.0-OpenSSH_9.6\r\n', false, 'more to come'],
  ['not HTTP, a blank line in it', 'SSH-2.0-OpenSSH_9.6\r\n\r\n', false, 'refused: bad status line in a response'],
];
