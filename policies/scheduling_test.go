package policies

import (
	"reflect"
	"testing"
)

func TestImageSchedulingFields(t *testing.T) {
	p := mustParse(t, `
images:
  gpu:
    image: hubgate/cuda:latest
    pull: never
    node_selector: {nvidia.com/gpu.present: "true", pool: gpu}
    tolerations:
      - {key: nvidia.com/gpu, operator: exists, effect: NoSchedule}
      - {key: dedicated, value: research}
    extended_resources: {nvidia.com/gpu: 1}
teams:
  t: {members: [a], images: [gpu]}
`)
	img := p.Images["gpu"]
	if img.Pull != PullNever {
		t.Errorf("pull = %q", img.Pull)
	}
	if !reflect.DeepEqual(img.NodeSelector, map[string]string{"nvidia.com/gpu.present": "true", "pool": "gpu"}) {
		t.Errorf("node_selector = %v", img.NodeSelector)
	}
	want := []Toleration{{Key: "nvidia.com/gpu", Operator: "exists", Effect: "NoSchedule"}, {Key: "dedicated", Value: "research"}}
	if !reflect.DeepEqual(img.Tolerations, want) {
		t.Errorf("tolerations = %+v", img.Tolerations)
	}
	if !reflect.DeepEqual(img.ExtendedResources, map[string]int64{"nvidia.com/gpu": 1}) {
		t.Errorf("extended_resources = %v", img.ExtendedResources)
	}
}

func TestImageSchedulingProblems(t *testing.T) {
	_, err := Parse("policy.yaml", []byte(`images:
  gpu:
    image: x
    pull: sometimes
    node_selector: {"bad key!": x, ok: "bad value!"}
    tolerations:
      - {key: k, operator: lt}
      - {operator: exists, value: v}
      - {value: v}
      - {key: k, effect: Never, colour: red}
    extended_resources: {gpu: 1, nvidia.com/gpu: 0, example.com/x: many}
`))
	got := problemStrings(t, err)
	want := []string{
		`policy.yaml:4: images.gpu.pull: invalid pull policy "sometimes": use always, if_missing or never`,
		`policy.yaml:5: images.gpu.node_selector["bad key!"]: invalid node label key "bad key!": use [prefix/]name, such as "nvidia.com/gpu.present"`,
		`policy.yaml:5: images.gpu.node_selector.ok: invalid node label value "bad value!": at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`,
		`policy.yaml:7: images.gpu.tolerations[0].operator: invalid operator "lt": use equal or exists`,
		`policy.yaml:8: images.gpu.tolerations[1]: a toleration with operator exists takes no value`,
		`policy.yaml:9: images.gpu.tolerations[2]: a toleration needs a key (or operator: exists to tolerate every taint)`,
		`policy.yaml:10: images.gpu.tolerations[3].effect: invalid effect "Never": use NoSchedule, PreferNoSchedule or NoExecute`,
		`policy.yaml:10: images.gpu.tolerations[3].colour: unknown field (known fields: key, operator, value, effect)`,
		`policy.yaml:11: images.gpu.extended_resources.gpu: invalid extended resource "gpu": use domain/name, such as "nvidia.com/gpu" (memory and cpus are team limits)`,
		`policy.yaml:11: images.gpu.extended_resources["nvidia.com/gpu"]: count 0 out of range 1 to 1024`,
		`policy.yaml:11: images.gpu.extended_resources["example.com/x"]: expected an integer, got the string "many"`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", join(got), join(want))
	}
}

func join(s []string) string {
	out := ""
	for _, l := range s {
		out += "  " + l + "\n"
	}
	return out
}
