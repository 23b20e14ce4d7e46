package hub

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"go.uber.org/zap"

	"github.com/hubgate/hubgate/spawner"
	"github.com/hubgate/hubgate/spawner/contract"
)

// Provenance is the gateway's part of a start's provenance: what it knows
// itself, before the container runs. It reaches the container as
// HUBGATE_PROVENANCE (the entrypoint adds the repos' commits and writes
// ~/.hubgate/provenance.json), and the audit log's "provenance" record
// repeats it with the image the engine actually runs.
type Provenance struct {
	User   string `json:"user"`
	Server string `json:"server"`
	// Image is the policy's image reference.
	Image string `json:"image"`
	// ImageID is the engine's ID of that image when the start began
	// (Docker); empty where the nodes resolve images (Kubernetes: the
	// audit record has the pod's imageID).
	ImageID string `json:"image_id,omitempty"`
	// PolicyHash is the hash of the policy that granted the start.
	PolicyHash string `json:"policy_hash"`
	// Teams are the user's teams, which the limits and repos come from.
	Teams []string `json:"teams"`
	// Limits are the container's limits.
	Limits ProvenanceLimits `json:"limits"`
	// Repos are the team repos the policy grants ("owner/name").
	Repos []string `json:"repos_granted"`
	// Started is when the gateway began the start.
	Started time.Time `json:"started"`
}

// ProvenanceLimits are the limits of a start (0: none).
type ProvenanceLimits struct {
	MemoryBytes  int64   `json:"memory_bytes"`
	CPUs         float64 `json:"cpus"`
	Pids         int64   `json:"pids"`
	IdleTimeoutS float64 `json:"idle_timeout_s"`
	MaxAgeS      float64 `json:"max_age_s"`
}

// provenance builds a start's provenance, asking the engine for the
// image's ID where it can tell before the start (an error is left to the
// start itself to report).
func (rt *Runtime) provenance(ctx context.Context, req StartRequest) Provenance {
	g := req.Grant
	p := Provenance{
		User: req.User, Server: req.Server, Image: req.Image.Image,
		PolicyHash: g.PolicyHash, Teams: slices.Clone(g.Teams), Repos: slices.Clone(g.Repos),
		Limits: ProvenanceLimits{
			MemoryBytes: g.Limits.Memory, CPUs: g.Limits.CPUs, Pids: g.Limits.Pids,
			IdleTimeoutS: g.IdleTimeout.Seconds(), MaxAgeS: g.MaxAge.Seconds(),
		},
		Started: time.Now().UTC(),
	}
	if p.Teams == nil {
		p.Teams = []string{}
	}
	if p.Repos == nil {
		p.Repos = []string{}
	}
	if r, ok := rt.spawner.(spawner.ImageResolver); ok {
		if id, err := r.ResolveImage(ctx, req.Image.Image); err == nil {
			p.ImageID = id
		}
	}
	return p
}

// provenanceEnv is the provenance as the container's HUBGATE_PROVENANCE.
func provenanceEnv(p Provenance) string {
	b, _ := json.Marshal(p)
	return string(b)
}

// provenanceLogLines is how much of a container's log is searched for the
// entrypoint's provenance line.
const provenanceLogLines = 500

// auditProvenance writes the "provenance" record of a start that
// succeeded: the gateway's part, the image the container runs (the
// engine's word), and the repos' commits as the container's entrypoint
// reported them (the container's word: see SECURITY.md).
func (rt *Runtime) auditProvenance(ctx context.Context, req StartRequest, inst spawner.Instance, p Provenance) {
	fields := []zap.Field{
		zap.String("user", p.User), zap.String("server", p.Server), zap.String("container_id", shortID(inst.ID)),
		zap.String("image", p.Image), zap.String("policy_hash", p.PolicyHash), zap.Strings("teams", p.Teams),
		zap.Int64("memory_bytes", p.Limits.MemoryBytes), zap.Float64("cpus", p.Limits.CPUs), zap.Int64("pids", p.Limits.Pids),
		zap.Float64("idle_timeout_s", p.Limits.IdleTimeoutS), zap.Float64("max_age_s", p.Limits.MaxAgeS),
	}
	imageID := inst.ImageID
	if imageID == "" {
		imageID = p.ImageID
	}
	fields = append(fields, zap.String("image_id", imageID))
	if p.ImageID != "" && inst.ImageID != "" && p.ImageID != inst.ImageID {
		// The tag moved between the gateway's look and the create.
		fields = append(fields, zap.String("image_id_told_container", p.ImageID))
	}
	if len(p.Repos) > 0 {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		logs, err := rt.spawner.Logs(lctx, req.User, req.Server, provenanceLogLines)
		cancel()
		repos, found := parseProvenanceLine(logs, p.Repos)
		switch {
		case err != nil:
			fields = append(fields, zap.String("repos_reported", "container log unavailable: "+err.Error()))
		case !found:
			fields = append(fields, zap.String("repos_reported", "no report: the image does not start through hubgate's entrypoint"))
		default:
			fields = append(fields, zap.String("repos_reported", "by the container's entrypoint"), zap.Any("repos", repos))
		}
	}
	rt.audit.Info("provenance", fields...)
}

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// parseProvenanceLine finds the entrypoint's provenance line (the last
// one) in a container's log and keeps only what it may say: repos the
// policy granted, once each, with commit hashes that look like hashes and
// short printable text.
func parseProvenanceLine(logs string, granted []string) ([]contract.ProvenanceRepo, bool) {
	var line string
	for l := range strings.Lines(logs) {
		if i := strings.Index(l, contract.ProvenanceMarker); i >= 0 && len(l) < 1<<20 {
			line = l[i+len(contract.ProvenanceMarker):]
		}
	}
	if line == "" {
		return nil, false
	}
	var rep contract.ProvenanceReport
	if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &rep); err != nil {
		return nil, false
	}
	out := []contract.ProvenanceRepo{}
	seen := map[string]bool{}
	for _, r := range rep.Repos {
		if !slices.Contains(granted, r.Repo) || seen[r.Repo] {
			continue
		}
		seen[r.Repo] = true
		if !commitRE.MatchString(r.Commit) {
			r.Commit = ""
		}
		r.Branch, r.Sync = printable(r.Branch, 200), printable(r.Sync, 300)
		out = append(out, r)
	}
	return out, true
}

// printable is s without control characters, cut to n bytes.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
}
