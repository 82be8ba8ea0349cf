package kafka

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// IncrementalAlterConfigs: v0-1. The configs of AlterConfigs, changed one
// by one: SET sets a value, DELETE returns it to its default (-1 for the
// retention values, delete for cleanup.policy); configs not named keep
// their values. APPEND and SUBTRACT apply to list configs only:
// cleanup.policy APPEND delete changes nothing, anything else is
// INVALID_CONFIG. The change is one set_topic_config commit decided on the
// latest state, so two nodes changing different values do not undo each
// other. ValidateOnly checks without committing.

func init() { regKey(44, 0, 1, handleIncrementalAlterConfigs) }

func handleIncrementalAlterConfigs(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	seen := map[resourceKey]int{}
	for _, rr := range req.Resources {
		seen[resourceKey{rr.ResourceType, rr.ResourceName}]++
	}
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		var ch retentionChange
		err := applyConfigs(rr.Configs, func(c kmsg.IncrementalAlterConfigsRequestResourceConfig) string { return c.Name }, ch.apply)
		if seen[resourceKey{rr.ResourceType, rr.ResourceName}] > 1 {
			err = fmt.Errorf("%w: resource %q named twice in one request", errInvalidRequest, rr.ResourceName)
		}
		sr.ErrorCode, sr.ErrorMessage = s.alterConfigs(rr.ResourceType, rr.ResourceName, len(rr.Configs), ch, req.ValidateOnly, err)
		resp.Resources = append(resp.Resources, sr)
	}
	return now(resp), nil
}

// apply applies one incremental config operation to the change.
func (ch *retentionChange) apply(c kmsg.IncrementalAlterConfigsRequestResourceConfig) error {
	switch c.Op {
	case kmsg.IncrementalAlterConfigOpSet:
		return ch.set(c.Name, c.Value)
	case kmsg.IncrementalAlterConfigOpDelete:
		def := "-1"
		if c.Name == "cleanup.policy" {
			def = "delete"
		}
		return ch.set(c.Name, &def)
	case kmsg.IncrementalAlterConfigOpAppend:
		if c.Name == "cleanup.policy" && c.Value != nil && *c.Value == "delete" {
			return nil // already the whole list
		}
	}
	return fmt.Errorf("%w: %v %s: only cleanup.policy is a list, and it can only hold delete", errInvalidConfig, c.Op, c.Name)
}
