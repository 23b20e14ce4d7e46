package login

// Seal seals v for purpose with the deployment's cookie key, for the
// server hosts' handshake codes and cookies (see session/serverhost.go).
func (a *Authenticator) Seal(purpose string, v any) (string, error) {
	return a.o.Codec.Seal(purpose, v)
}

// Open reverses Seal.
func (a *Authenticator) Open(purpose, sealed string, v any) error {
	return a.o.Codec.Open(purpose, sealed, v)
}
