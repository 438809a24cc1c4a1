import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

// A private certificate authority for a Dragnet deployment (the lab makes one
// at `lab up`), so every link runs TLS without any outside CA. ECDSA P-256.

type X509Crypto = Parameters<typeof x509.cryptoProvider.set>[0];
type KeyPair = { publicKey: webcrypto.CryptoKey; privateKey: webcrypto.CryptoKey };

x509.cryptoProvider.set(webcrypto as unknown as X509Crypto);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export interface Pem {
  cert: string;
  key: string;
}

async function exportKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
    .toString("hex")
    .replace(/^[89a-f]/, "1");
}

export interface CertificateAuthority extends Pem {
  issue(options: {
    commonName: string;
    dnsNames?: string[];
    ips?: string[];
    server?: boolean;
    client?: boolean;
    days?: number;
  }): Promise<Pem>;
}

export async function createCertificateAuthority(
  name = "Dragnet CA",
  days = 3650,
): Promise<CertificateAuthority> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as KeyPair;
  const now = new Date();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + days * 86_400_000),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const ca: CertificateAuthority = {
    cert: caCert.toString("pem"),
    key: await exportKey(keys.privateKey),
    async issue({
      commonName,
      dnsNames = [],
      ips = [],
      server = true,
      client = false,
      days: certDays = 825,
    }) {
      const leafKeys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as KeyPair;
      const usages: string[] = [];
      if (server) usages.push(x509.ExtendedKeyUsage.serverAuth);
      if (client) usages.push(x509.ExtendedKeyUsage.clientAuth);
      const names = [
        ...dnsNames.map((value) => ({ type: "dns" as const, value })),
        ...ips.map((value) => ({ type: "ip" as const, value })),
      ];
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: `CN=${commonName}`,
        issuer: caCert.subject,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + certDays * 86_400_000),
        signingAlgorithm: ALG,
        publicKey: leafKeys.publicKey,
        signingKey: keys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(
            x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
            true,
          ),
          new x509.ExtendedKeyUsageExtension(usages, false),
          ...(names.length ? [new x509.SubjectAlternativeNameExtension(names, false)] : []),
          await x509.AuthorityKeyIdentifierExtension.create(caCert),
        ],
      });
      return { cert: cert.toString("pem"), key: await exportKey(leafKeys.privateKey) };
    },
  };
  return ca;
}
