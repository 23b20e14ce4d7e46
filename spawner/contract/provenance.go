package contract

// The provenance of a session: what the gateway knows at a start (image,
// its ID, the policy's hash, the limits) reaches the entrypoint in
// Provenance; the entrypoint adds the commit of each team repo after its
// sync, writes the whole to ProvenanceFile in the user's home, and prints
// the repos on one line starting with ProvenanceMarker, which the gateway
// reads from the container's log for the audit log.
const (
	// Provenance is the gateway's part of the provenance, a JSON object.
	Provenance = "HUBGATE_PROVENANCE"
	// ProvenanceFile is where the entrypoint writes the provenance,
	// relative to HOME.
	ProvenanceFile = ".hubgate/provenance.json"
	// ProvenanceMarker starts the log line with the repos' commits.
	ProvenanceMarker = "hubgate-provenance: "
)

// ProvenanceRepo is one team repo as the entrypoint found it after its
// sync.
type ProvenanceRepo struct {
	// Repo is "owner/name", as in HUBGATE_REPOS.
	Repo string `json:"repo"`
	// Commit is the full hash of HEAD in ~/repos/<name>; empty when the
	// repo is not there (not cloned yet, unreachable).
	Commit string `json:"commit,omitempty"`
	// Branch is the checked-out branch; empty for a detached HEAD.
	Branch string `json:"branch,omitempty"`
	// Dirty says the work tree has uncommitted changes, so the files
	// differ from Commit.
	Dirty bool `json:"dirty,omitempty"`
	// Sync is what the sync did ("cloned ...", "fast-forwarded ...",
	// "left alone: ..."), as in ~/repos/.hubgate-sync.log.
	Sync string `json:"sync,omitempty"`
}

// ProvenanceReport is what the marker line carries.
type ProvenanceReport struct {
	Repos []ProvenanceRepo `json:"repos"`
}
