// Command kube-controller-manager is upstream's cmd/kube-controller-manager
// (k8s.io/kubernetes), built from this wrapper module because `go install`
// refuses k8s.io/kubernetes's replace directives. See ../build-node.sh.
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
