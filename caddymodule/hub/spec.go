package hub

import (
	"context"
	"encoding/json"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/hubgate/hubgate/internal/randid"
	"github.com/hubgate/hubgate/policies"
	"github.com/hubgate/hubgate/spawner"
	"github.com/hubgate/hubgate/spawner/contract"
)

// spec is the container contract for one start.
func (rt *Runtime) spec(ctx context.Context, req StartRequest, timeout time.Duration) spawner.Spec {
	img, grant := req.Image, req.Grant
	nonce := randid.ID()
	env := make(map[string]string, len(img.Env)+16)
	maps.Copy(env, img.Env)
	if req.IdentityEnv != nil {
		maps.Copy(env, req.IdentityEnv(ctx))
	}
	env[contract.User] = req.User
	env[contract.Server] = req.Server
	env[contract.BaseURL] = req.Prefix
	env[contract.DefaultURL] = img.URL
	env[contract.JupyterHubServicePrefix] = req.Prefix
	env[contract.Token] = ContainerToken(rt.tokens, nonce)
	// The image's entrypoint syncs the team's repos before the app starts;
	// it must give up well within the start timeout.
	env[contract.SyncTimeout] = max(timeout-30*time.Second, 10*time.Second).String()
	return spawner.Spec{
		User:      req.User,
		Server:    req.Server,
		Image:     img.Image,
		Port:      img.Port,
		Cmd:       img.Command,
		Env:       env,
		HomeMount: img.Home,
		Nonce:     nonce,
		CapAdd:    img.CapAdd,
		// Scheduling on a cluster (ignored by Docker).
		PullPolicy:        img.Pull,
		NodeSelector:      img.NodeSelector,
		Tolerations:       tolerations(img.Tolerations),
		ExtendedResources: img.ExtendedResources,
		// A read-only root keeps a fresh tmpfs at /tmp; the home volume
		// stays writable.
		ReadOnlyRootFS: img.ReadOnly,
		Meta: map[string]string{
			MetaIdleTimeout: strconv.FormatFloat(grant.IdleTimeout.Seconds(), 'f', -1, 64),
			MetaMaxAge:      strconv.FormatFloat(grant.MaxAge.Seconds(), 'f', -1, 64),
			MetaMemory:      strconv.FormatInt(grant.Limits.Memory, 10),
			MetaCPUs:        strconv.FormatFloat(grant.Limits.CPUs, 'f', -1, 64),
			MetaGroups:      groupsMeta(req.Groups),
		},
		Limits: spawner.Limits{
			MemoryBytes: grant.Limits.Memory,
			NanoCPUs:    int64(grant.Limits.CPUs * 1e9),
			Pids:        grant.Limits.Pids,
		},
	}
}

// safeOutput is the last n lines of a container's output with every
// environment value longer than 8 characters that names a secret (the
// container token, a GitHub token, the egress proxy URL with its
// credential) replaced, for the user's error page.
func safeOutput(logs string, env map[string]string, n int) string {
	for k, v := range env {
		if len(v) > 8 && (k == contract.Token || k == contract.GitHubToken || strings.Contains(strings.ToUpper(k), "SECRET") ||
			strings.Contains(strings.ToUpper(k), "TOKEN") || strings.Contains(strings.ToUpper(k), "PASSWORD") ||
			strings.Contains(strings.ToUpper(k), "PROXY")) {
			logs = strings.ReplaceAll(logs, v, "[redacted]")
		}
	}
	lines := strings.Split(strings.TrimRight(logs, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// groupsMeta is groups as MetaGroups stores them.
func groupsMeta(groups []string) string {
	if groups == nil {
		groups = []string{}
	}
	b, _ := json.Marshal(groups)
	return string(b)
}

// GroupsFromMeta reads MetaGroups back.
func GroupsFromMeta(meta map[string]string) []string {
	var groups []string
	_ = json.Unmarshal([]byte(meta[MetaGroups]), &groups)
	return groups
}

func tolerations(ts []policies.Toleration) []spawner.Toleration {
	if len(ts) == 0 {
		return nil
	}
	out := make([]spawner.Toleration, len(ts))
	for i, t := range ts {
		out[i] = spawner.Toleration{Key: t.Key, Operator: t.Operator, Value: t.Value, Effect: t.Effect}
	}
	return out
}
