// Command kubelet is upstream's cmd/kubelet (k8s.io/kubernetes), built from
// this wrapper module because `go install k8s.io/kubernetes/cmd/kubelet`
// refuses k8s.io/kubernetes's replace directives. See ../build-node.sh.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
