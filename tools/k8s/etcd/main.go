// Command etcd is upstream's etcd server, built from its published module for
// hubgate's integration tests (Debian's etcd 3.4 breaks watches without a
// resourceVersion on a 1.37 apiserver).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
