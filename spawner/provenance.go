package spawner

import "context"

// ImageResolver is implemented by spawners that can tell, before a start,
// the identity of the image a reference names on the engine (Docker's
// image ID), so the gateway can hand it to the container with the rest of
// its provenance. Backends whose nodes resolve images themselves (a
// cluster) do not implement it; their Instance.ImageID says it after the
// start.
type ImageResolver interface {
	// ResolveImage returns the engine's ID of the image ref names; it
	// wraps ErrImageMissing when there is none.
	ResolveImage(ctx context.Context, ref string) (string, error)
}
