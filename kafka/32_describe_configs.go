package kafka

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale/tier/manifest"
)

// DescribeConfigs: v0-4. Topics: retention.ms and retention.bytes from the
// topic (set at creation), cleanup.policy=delete and max.message.bytes
// (the node's largest batch, read-only). Brokers: no configs.

func init() { regKey(32, 0, 4, handleDescribeConfigs) }

type config struct {
	name, value string
	readOnly    bool
	source      int8 // 1 topic (DYNAMIC_TOPIC_CONFIG), 4 the node's (STATIC_BROKER_CONFIG), 5 DEFAULT_CONFIG
}

func describeTopic(s *Server, t manifest.Topic) []config {
	src := func(v int64) int8 {
		if v == -1 {
			return 5 // DEFAULT_CONFIG: unlimited is the default
		}
		return 1 // DYNAMIC_TOPIC_CONFIG
	}
	return []config{
		{"cleanup.policy", "delete", false, 5}, // settable, to delete only (33_alter_configs.go)
		{"max.message.bytes", strconv.Itoa(s.node.Opts.MaxBatchBytes), true, 4},
		{"retention.bytes", strconv.FormatInt(t.Retention.Bytes, 10), false, src(t.Retention.Bytes)},
		{"retention.ms", strconv.FormatInt(t.Retention.Ms, 10), false, src(t.Retention.Ms)},
	}
}

func handleDescribeConfigs(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeBroker:
		case kmsg.ConfigResourceTypeTopic:
			ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
			t, err := s.node.Log.Topic(ctx, rr.ResourceName)
			cancel()
			if err != nil {
				sr.ErrorCode, sr.ErrorMessage = code(err), errMsg(err)
				break
			}
			for _, c := range describeTopic(s, t) {
				if rr.ConfigNames != nil && !contains(rr.ConfigNames, c.name) {
					continue
				}
				rc := kmsg.NewDescribeConfigsResponseResourceConfig()
				rc.Name, rc.Value, rc.ReadOnly = c.name, &c.value, c.readOnly
				rc.IsDefault = c.source == 5
				rc.Source = kmsg.ConfigSource(c.source)
				if c.name == "cleanup.policy" {
					rc.ConfigType = kmsg.ConfigTypeList
				} else if c.name == "max.message.bytes" {
					rc.ConfigType = kmsg.ConfigTypeInt
				} else {
					rc.ConfigType = kmsg.ConfigTypeLong
				}
				sr.Configs = append(sr.Configs, rc)
			}
		default:
			sr.ErrorCode = kerr.InvalidRequest.Code
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return now(resp), nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
