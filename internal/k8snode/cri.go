package k8snode

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criClient is a CRI client of the node's containerd.
type criClient struct {
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
}

// dialCRI connects to the CRI socket at sock (the connection is lazy).
func dialCRI(sock string) (*criClient, error) {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial CRI %s: %w", sock, err)
	}
	return &criClient{conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

// ready returns nil once the runtime answers and reports RuntimeReady.
func (c *criClient) ready(ctx context.Context) error {
	st, err := c.rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return fmt.Errorf("CRI status: %w", err)
	}
	for _, cond := range st.GetStatus().GetConditions() {
		if cond.GetType() == runtimeapi.RuntimeReady && !cond.GetStatus() {
			return fmt.Errorf("CRI runtime not ready: %s %s", cond.GetReason(), cond.GetMessage())
		}
	}
	return nil
}

// sandboxes lists every pod sandbox, running or not.
func (c *criClient) sandboxes(ctx context.Context) ([]*runtimeapi.PodSandbox, error) {
	resp, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("list pod sandboxes: %w", err)
	}
	return resp.GetItems(), nil
}

// runningContainers counts the running containers (not sandboxes) whose
// CRI labels include labels.
func (c *criClient) runningContainers(ctx context.Context, labels map[string]string) (int, error) {
	resp, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{
			State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
			LabelSelector: labels,
		},
	})
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	return len(resp.GetContainers()), nil
}

// removeAll stops (killing containers, running CNI DEL, removing the
// network namespace) and removes every pod sandbox.
func (c *criClient) removeAll(ctx context.Context) error {
	boxes, err := c.sandboxes(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range boxes {
		if _, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: b.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("stop sandbox %s (%s): %w", b.GetId(), b.GetMetadata().GetName(), err))
			continue
		}
		if _, err := c.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: b.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("remove sandbox %s (%s): %w", b.GetId(), b.GetMetadata().GetName(), err))
		}
	}
	return errors.Join(errs...)
}

func (c *criClient) close() { _ = c.conn.Close() }
