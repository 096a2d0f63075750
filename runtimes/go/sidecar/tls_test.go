package sidecar

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// selfSigned writes a throwaway certificate for 127.0.0.1 and its key as PEM files.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "onnxpipe sidecar test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestTLS: a sidecar serving TLS (--tls-cert/--tls-key) with a token is reached with WithTLSCAFile and
// WithToken; a plaintext client gets no connection.
func TestTLS(t *testing.T) {
	const token = "tls-token"
	cert, key := selfSigned(t)
	srv, err := startSidecar(vectorModel("basic"), "--name", "basic", "--tls-cert", cert, "--tls-key", key,
		"--token", token)
	if err != nil {
		t.Fatalf("cannot start the sidecar: %v", err)
	}
	defer srv.stop()
	inputs, want, v := basicInputs(t)

	client := dial(t, srv, WithTLSCAFile(cert), WithToken(token))
	res, err := client.Infer(testContext(t), "basic", inputs)
	if err != nil {
		t.Fatal(err)
	}
	if err := compareOutputs(res.Outputs, want, v.Tolerance); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	plain, err := Dial(ctx, srv.addr, WithToken(token))
	if plain != nil {
		plain.Close()
	}
	wantError(t, err, ErrUnavailable, "UNAVAILABLE", codes.OK)
}
