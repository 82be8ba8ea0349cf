package kafka

import (
	"context"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// AlterConfigs: v0-2. Replaces a topic's configs: retention.ms and
// retention.bytes (-1 unlimited, or positive; one not given goes back to
// -1, as Kafka resets configs an AlterConfigs leaves out), cleanup.policy
// delete (compact is INVALID_CONFIG: shale has no compactor for it yet).
// Any other config is INVALID_CONFIG. Brokers have no configs to set.
// The change is one set_topic_config commit (manifest.Log.SetRetention);
// ValidateOnly checks without committing.

func init() { regKey(33, 0, 2, handleAlterConfigs) }

func handleAlterConfigs(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	seen := map[resourceKey]int{}
	for _, rr := range req.Resources {
		seen[resourceKey{rr.ResourceType, rr.ResourceName}]++
	}
	for _, rr := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		unlimited := int64(-1)
		ch := retentionChange{ms: &unlimited, bytes: &unlimited}
		err := applyConfigs(rr.Configs, func(c kmsg.AlterConfigsRequestResourceConfig) string { return c.Name },
			func(c kmsg.AlterConfigsRequestResourceConfig) error { return ch.set(c.Name, c.Value) })
		if seen[resourceKey{rr.ResourceType, rr.ResourceName}] > 1 {
			err = fmt.Errorf("%w: resource %q named twice in one request", errInvalidRequest, rr.ResourceName)
		}
		sr.ErrorCode, sr.ErrorMessage = s.alterConfigs(rr.ResourceType, rr.ResourceName, len(rr.Configs), ch, req.ValidateOnly, err)
		resp.Resources = append(resp.Resources, sr)
	}
	return now(resp), nil
}

// applyConfigs applies each config of one resource in order, refusing a
// config named twice; the first error stops it.
func applyConfigs[C any](configs []C, name func(C) string, apply func(C) error) error {
	names := map[string]bool{}
	for _, c := range configs {
		if names[name(c)] {
			return fmt.Errorf("%w: config %q given twice", errInvalidRequest, name(c))
		}
		names[name(c)] = true
		if err := apply(c); err != nil {
			return err
		}
	}
	return nil
}

type resourceKey struct {
	typ  kmsg.ConfigResourceType
	name string
}

// retentionChange is what an alter request does to a topic's retention:
// a nil value is left as it is.
type retentionChange struct{ ms, bytes *int64 }

// set applies config name=value to the change, refusing what shale does
// not keep: any config but retention.ms, retention.bytes and
// cleanup.policy=delete.
func (ch *retentionChange) set(name string, value *string) error {
	v := ""
	if value != nil {
		v = *value
	}
	switch name {
	case "retention.ms", "retention.bytes":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < -1 || n == 0 {
			return fmt.Errorf("%w: %s=%q: want -1 (unlimited) or a positive integer", errInvalidConfig, name, v)
		}
		if name == "retention.ms" {
			ch.ms = &n
		} else {
			ch.bytes = &n
		}
	case "cleanup.policy":
		if v != "delete" {
			return fmt.Errorf("%w: cleanup.policy=%q: shale topics are delete only (compaction is not built yet)", errInvalidConfig, v)
		}
	default:
		return fmt.Errorf("%w: config %q is not supported (retention.ms, retention.bytes, cleanup.policy are)", errInvalidConfig, name)
	}
	return nil
}

// alterConfigs applies a parsed change (or reports err, the request's
// own fault) to a resource with n configs, returning the response's error
// code and message.
func (s *Server) alterConfigs(typ kmsg.ConfigResourceType, name string, n int, ch retentionChange, validateOnly bool, err error) (int16, *string) {
	if typ != kmsg.ConfigResourceTypeTopic && typ != kmsg.ConfigResourceTypeBroker {
		err = fmt.Errorf("%w: resource type %v has no configs in shale", errInvalidRequest, typ)
	}
	if err == nil {
		switch typ {
		case kmsg.ConfigResourceTypeTopic:
			ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
			_, err = s.node.Log.SetRetention(ctx, name, ch.ms, ch.bytes, validateOnly)
			cancel()
		default: // a broker
			if n > 0 {
				err = fmt.Errorf("%w: shale nodes have no dynamic configs", errInvalidConfig)
			}
		}
	}
	if err == nil {
		return 0, nil
	}
	return code(err), errMsg(err)
}
