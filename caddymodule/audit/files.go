package audit

// Files lists the files of the audit log at path in the order they were
// written: its rotated files, oldest first, then path itself. Files that
// do not exist are left out. It is the argument list verify-audit wants,
// and what a reader of the whole chain reads.
func Files(path string) ([]string, error) {
	rotated, err := rotatedFiles(path)
	if err != nil {
		return nil, err
	}
	return append(rotated, path), nil
}
