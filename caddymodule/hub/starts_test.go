package hub

import (
	"encoding/json"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestStartTimelineEncoding: a start's timeline encodes as the spawn
// audit record's "steps", each step with how long it took, after the time
// before the first (e2e's TestStartQueueOrderAndPosition reads them from
// a real gateway's log).
func TestStartTimelineEncoding(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	st := &Start{began: t0}
	at := []time.Duration{3 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 270 * time.Millisecond}
	for i, name := range []string{"creating the home volume", "creating the container", "starting the container", StepWaiting} {
		st.step(name)
		st.stepAt[i] = t0.Add(at[i]) // as if each began then
	}
	st.step(StepWaiting) // a repeated step is not a new one
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	buf, err := enc.EncodeEntry(zapcore.Entry{Message: "spawn"}, []zapcore.Field{zap.Array("steps", st.timeline(t0.Add(1900*time.Millisecond)))})
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Steps []struct {
			Step string  `json:"step"`
			MS   float64 `json:"ms"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf)
	}
	want := []struct {
		step string
		ms   float64
	}{{"preparing", 3}, {"creating the home volume", 7}, {"creating the container", 15}, {"starting the container", 245}, {StepWaiting, 1630}}
	if got := (&Start{began: t0}).timeline(t0); got != nil {
		t.Errorf("timeline of a start with no steps = %v, want none", got)
	}
	if len(rec.Steps) != len(want) {
		t.Fatalf("steps = %+v, want %+v", rec.Steps, want)
	}
	for i, w := range want {
		if rec.Steps[i].Step != w.step || rec.Steps[i].MS != w.ms {
			t.Errorf("step %d = %+v, want %+v", i, rec.Steps[i], w)
		}
	}
}
