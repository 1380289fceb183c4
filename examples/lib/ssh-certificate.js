/**
 * OpenSSH user certificates for ssh2 clients (PROTOCOL.certkeys in the OpenSSH sources):
 *
 *   const cert = userCertificate({ ca, key, principals: ['root'], keyId: 'who and why', ttlSeconds: 120 });
 *   presentCertificate(client);          // once the ssh2 Client is connecting (e.g. in its authHandler)
 *   next({ type: 'publickey', username: 'root', key: certificateKey(key, cert) });
 *
 * `ca` and `key` are ed25519 keys parsed by ssh2 (`utils.parseKey`). A destination's sshd
 * accepts the certificate when its `TrustedUserCAKeys` lists the CA's public key and the
 * user is one of the principals; no authorized_keys entry is needed.
 *
 * ssh2 1.17 knows no certificates: it signs the login with the key and names the signature
 * after the key's algorithm. With a certificate that name would be the certificate's
 * (`ssh-ed25519-cert-v01@openssh.com`) where OpenSSH expects the plain key's
 * (`ssh-ed25519`), so `presentCertificate` takes over the one packet that carries the
 * signature. It touches ssh2 internals (`_protocol`, its packet writer and auth queue):
 * checked against ssh2 1.17.
 */
import { createHash, randomBytes } from 'node:crypto';
import protocolUtils from 'ssh2/lib/protocol/utils.js';

export const CERT_TYPE = 'ssh-ed25519-cert-v01@openssh.com';
const KEY_TYPE = 'ssh-ed25519';
const SSH_CERT_TYPE_USER = 1;
const CERTIFICATE = Symbol('ssh certificate');

const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u64 = (n) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};
/** An SSH `string`: uint32 length, then the bytes. */
export const sshString = (value) => {
  const b = Buffer.from(value);
  return Buffer.concat([u32(b.length), b]);
};

/** The `string`s of an SSH blob, in order. */
function sshStrings(blob) {
  const out = [];
  for (let p = 0; p + 4 <= blob.length; ) {
    const len = blob.readUInt32BE(p);
    out.push(blob.subarray(p + 4, p + 4 + len));
    p += 4 + len;
  }
  return out;
}

/** `SHA256:…` as ssh-keygen -l prints it, of a public key (or certificate) blob. */
export const fingerprint = (blob) => `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;

/** A public key line (`ssh-ed25519 AAAA… comment`) of an ssh2 key. */
export const publicKeyLine = (key, comment = '') => `${key.type} ${key.getPublicSSH().toString('base64')}${comment ? ` ${comment}` : ''}\n`;

function requireEd25519(key, what) {
  if (key?.type !== KEY_TYPE) throw new TypeError(`${what} must be an ed25519 key parsed by ssh2 (got ${key?.type ?? key})`);
}

/**
 * A user certificate for `key`, signed by `ca`, valid for `principals` (user names) from a
 * minute ago (clock skew) for `ttlSeconds`. Only `permit-pty` is granted: no agent, X11 or
 * port forwarding, no ~/.ssh/rc.
 */
export function userCertificate({ ca, key, principals, keyId, ttlSeconds = 120, extensions = ['permit-pty'], serial = randomBytes(8).readBigUInt64BE() }) {
  requireEd25519(ca, 'the CA');
  requireEd25519(key, 'the certified key');
  const now = Math.floor(Date.now() / 1000);
  const [, publicKey] = sshStrings(key.getPublicSSH());
  const body = Buffer.concat([
    sshString(CERT_TYPE),
    sshString(randomBytes(32)), // nonce
    sshString(publicKey),
    u64(serial),
    u32(SSH_CERT_TYPE_USER),
    sshString(keyId),
    sshString(Buffer.concat(principals.map(sshString))),
    u64(now - 60),
    u64(now + ttlSeconds),
    sshString(''), // critical options: none
    sshString(Buffer.concat([...extensions].sort().flatMap((name) => [sshString(name), sshString('')]))),
    sshString(''), // reserved
    sshString(ca.getPublicSSH()),
  ]);
  const signature = ca.sign(body);
  if (signature instanceof Error) throw signature;
  return Buffer.concat([body, sshString(Buffer.concat([sshString(KEY_TYPE), sshString(signature)]))]);
}

/** An ssh2 private key that logs in with `cert` (signing with `key`). */
export function certificateKey(key, cert) {
  requireEd25519(key, 'the certified key');
  return Object.create(key, {
    type: { value: CERT_TYPE },
    getPublicSSH: { value: () => cert },
    [CERTIFICATE]: { value: true },
  });
}

/**
 * Makes an ssh2 Client send certificateKey() logins the way OpenSSH verifies them: ssh2
 * builds and signs the request (algorithm and blob: the certificate's, as RFC 4252 signs
 * them); this sends it with the signature named `ssh-ed25519`. Other keys are untouched.
 */
export function presentCertificate(client) {
  const proto = client._protocol;
  if (!proto || proto.authPK[CERTIFICATE]) return;
  const authPK = proto.authPK;
  const patched = function (username, key, keyAlgo, cbSign) {
    if (typeof keyAlgo === 'function') [keyAlgo, cbSign] = [undefined, keyAlgo];
    if (!cbSign || !key?.[CERTIFICATE]) return authPK.call(this, username, key, keyAlgo, cbSign);
    // `signed` is: string session id, then the request up to the signature.
    authPK.call(this, username, key, keyAlgo, (signed) =>
      cbSign(signed, (signature) => {
        const request = signed.subarray(4 + signed.readUInt32BE(0));
        const payload = Buffer.concat([request, sshString(Buffer.concat([sshString(KEY_TYPE), sshString(signature)]))]);
        const writer = this._packetRW.write;
        const packet = writer.alloc(payload.length);
        packet.set(payload, writer.allocStart);
        this._authsQueue.push('publickey');
        protocolUtils.sendPacket(this, writer.finalize(packet));
      }),
    );
  };
  patched[CERTIFICATE] = true;
  proto.authPK = patched;
}
