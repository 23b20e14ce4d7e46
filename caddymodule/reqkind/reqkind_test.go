package reqkind

import (
	"net/http"
	"testing"
)

func TestIsUpgrade(t *testing.T) {
	h1 := &http.Request{Method: "GET", ProtoMajor: 1, Proto: "HTTP/1.1", Header: http.Header{"Upgrade": {"websocket"}}}
	h2 := &http.Request{Method: "CONNECT", ProtoMajor: 2, Proto: "HTTP/2.0", Header: http.Header{":protocol": {"websocket"}}}
	h3 := &http.Request{Method: "CONNECT", ProtoMajor: 3, Proto: "websocket", Header: http.Header{}}
	plainConnect := &http.Request{Method: "CONNECT", ProtoMajor: 2, Proto: "HTTP/2.0", Header: http.Header{}}
	h3Get := &http.Request{Method: "GET", ProtoMajor: 3, Proto: "HTTP/3.0", Header: http.Header{}}
	for name, c := range map[string]struct {
		r    *http.Request
		want bool
	}{"h1 upgrade": {h1, true}, "h2 extended connect": {h2, true}, "h3 extended connect": {h3, true},
		"plain connect": {plainConnect, false}, "h3 get": {h3Get, false}} {
		if got := IsUpgrade(c.r); got != c.want {
			t.Errorf("%s: %v", name, got)
		}
		if c.want && WantsHTML(c.r) {
			t.Errorf("%s: an upgrade wants a page", name)
		}
	}
}
