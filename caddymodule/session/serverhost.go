package session

// Cookies and sealed values of server hosts (server_host): each server is
// its own origin, and gets its own host-only cookie there, minted through
// a redirect handshake with the hub. The hub's session cookie is never
// sent to a server host (it is __Host-, so host-only, on the hub's host).
const (
	// ServerCookie holds the sealed HostSession on a server host.
	ServerCookie = CookiePrefix + "srv"
	// ServerStateCookie binds a handshake to the browser that began it
	// on the server host.
	ServerStateCookie = CookiePrefix + "srvstate"

	// PurposeServerCode seals the one-time code the hub hands a server
	// host's callback.
	PurposeServerCode = "hubgate server code v1"
	// PurposeServerSession seals ServerCookie.
	PurposeServerSession = "hubgate server session v1"
	// PurposeServerState seals ServerStateCookie.
	PurposeServerState = "hubgate server state v1"
)

// HostSession is what a server host's cookie holds: the hub session it
// was minted from (so a logout or revocation at the hub ends it), the
// host it is bound to, and its own, shorter, expiry.
type HostSession struct {
	Session Session `json:"s"`
	// Host is the server host the cookie was minted for.
	Host string `json:"h"`
	// Until is when this cookie ends (Unix seconds); never later than the
	// hub session's expiry.
	Until int64 `json:"until"`
}
