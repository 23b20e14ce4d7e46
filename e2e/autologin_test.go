package e2e

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// TestAutoLoginGoesStraightToTheProvider: with one OIDC provider and local
// accounts off, a browser opening a server lands on the provider's login
// form without a click and comes back to the server; with auto_login off
// the login page with its button is shown instead.
func TestAutoLoginGoesStraightToTheProvider(t *testing.T) {
	o := startOP(t)
	g := startAuthGateway(t, gwOptions{policy: oidcPolicy, env: oidcEnv(o)}, oidcBlock+"local off\n")
	o.allow(g)
	ctx := newBrowser(t)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(g.url("/user/olivia/notebook/html")),
		chromedp.WaitVisible(chromedp.ID("password")),
	); err != nil {
		t.Fatalf("reach the OP's login form without a click: %v\n%s", err, g.logs())
	}
	submitOPForm(t, ctx, o, g, "olivia")
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != g.url("/user/olivia/notebook/html") {
		t.Fatalf("ended at %s, want the server", loc)
	}

	o2 := startOP(t)
	g2 := startAuthGateway(t, gwOptions{policy: oidcPolicy, env: oidcEnv(o2)}, oidcBlock+"local off\nauto_login off\n")
	o2.allow(g2)
	ctx2 := newBrowser(t)
	if err := chromedp.Do(ctx2,
		chromedp.Navigate(g2.url("/user/olivia/notebook/html")),
		chromedp.WaitVisible(chromedp.ID("provider-testop")),
	); err != nil {
		t.Fatalf("auto_login off: the chooser is not shown: %v\n%s", err, g2.logs())
	}
}
