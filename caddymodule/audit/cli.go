package audit

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// VerifyUsage is the usage line of the verify-audit command.
const VerifyUsage = "verify-audit (--jwks FILE | --key FILE) AUDIT-FILE..."

// RunVerify is `caddy hubgate verify-audit`: it verifies the audit files
// (rotated files oldest first, then the current one) with the keys of a
// JWKS (--jwks, what the gateway serves) or a PEM file (--key: public key,
// certificate or private key), prints "ok: N records, M checkpoints" or
// the first tampered record as file:line, and returns the exit code: 0 ok,
// 1 tampered, 2 usage or read errors.
func RunVerify(args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("verify-audit", flag.ContinueOnError)
	fs.SetOutput(stdout)
	jwks := fs.String("jwks", "", "JWKS file with the gateway's public key (as served at /hub/jwks.json)")
	keyFile := fs.String("key", "", "PEM file with the public key, a certificate or the private key")
	fs.Usage = func() {
		fmt.Fprintln(stdout, "usage: caddy hubgate "+VerifyUsage)
		fs.PrintDefaults()
	}
	// Flags may come before, between or after the files.
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) == 0 || (*jwks == "") == (*keyFile == "") {
		fmt.Fprintln(stdout, "verify-audit: give the audit files and exactly one of --jwks or --key")
		fs.Usage()
		return 2
	}
	src := *jwks
	if src == "" {
		src = *keyFile
	}
	keys, err := LoadKeys(src)
	if err != nil {
		fmt.Fprintln(stdout, "verify-audit:", err)
		return 2
	}
	rep, err := VerifyKeys(keys, files...)
	var p *Problem
	switch {
	case errors.As(err, &p):
		fmt.Fprintln(stdout, p.Error())
		return 1
	case err != nil:
		fmt.Fprintln(stdout, "verify-audit:", err)
		return 2
	}
	fmt.Fprintln(stdout, rep.String())
	return 0
}
