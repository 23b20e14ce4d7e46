package pages

import "net/http"

// TokenView is one personal API token on the home page.
type TokenView struct {
	ID, Note, Scope, Created, Expires, LastUsed string
	Expired                                     bool
}

// ServiceLink is one team service on the home page.
type ServiceLink struct {
	Name, Description, URL string
}

// TokenSection is the home page's personal-token part.
type TokenSection struct {
	// On says tokens are enabled (the section is shown).
	On bool
	// Tokens are the user's tokens, oldest first.
	Tokens []TokenView
	// Servers are the server keys a token may be limited to.
	Servers []string
	// Problem, if set, says why the list could not be read.
	Problem string
}

// NewTokenPage shows a token just made: the only time it is shown.
type NewTokenPage struct {
	Frame
	Token, Note, Scope, Expires string
	// Example is a curl command line using the token.
	Example string
}

// NewToken renders the page showing a new token (never cached).
func (p *Renderer) NewToken(w http.ResponseWriter, d NewTokenPage) error {
	w.Header().Set("Cache-Control", "no-store")
	return p.render(w, http.StatusOK, "newtoken", d)
}
