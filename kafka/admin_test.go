package kafka

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shalelog/shale"
)

func TestAdmin(t *testing.T) {
	_, _, addr := startNode(t, fileStore(t), "admin")
	c := newClient(t, kgo.SeedBrokers(addr))
	ctx := context.Background()
	str := func(s string) *string { return &s }

	create := func(validate bool, topics ...kmsg.CreateTopicsRequestTopic) []kmsg.CreateTopicsResponseTopic {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Topics, req.ValidateOnly = topics, validate
		resp, err := req.RequestWith(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics
	}
	topic := func(name string, parts int32, configs ...string) kmsg.CreateTopicsRequestTopic {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, parts, -1
		for i := 0; i < len(configs); i += 2 {
			c := kmsg.NewCreateTopicsRequestTopicConfig()
			c.Name, c.Value = configs[i], str(configs[i+1])
			rt.Configs = append(rt.Configs, c)
		}
		return rt
	}
	got := create(false,
		topic("ok", 3, "retention.ms", "60000", "cleanup.policy", "delete"),
		topic("compact", 1, "cleanup.policy", "compact"),
		topic("bad name!", 1),
		topic("zero", 0),
		topic("default", -1),
		topic("unknown-config", 1, "segment.bytes", "1"),
	)
	want := []int16{0, kerr.InvalidConfig.Code, kerr.InvalidTopicException.Code, kerr.InvalidPartitions.Code, 0, kerr.InvalidConfig.Code}
	for i, rt := range got {
		if rt.ErrorCode != want[i] {
			t.Errorf("create %s: code %d (%v), want %d", rt.Topic, rt.ErrorCode, rt.ErrorMessage, want[i])
		}
	}
	if got[0].NumPartitions != 3 || got[0].TopicID == [16]byte{} || got[4].NumPartitions != 1 {
		t.Errorf("created: %+v", got)
	}
	if got := create(false, topic("ok", 1)); got[0].ErrorCode != kerr.TopicAlreadyExists.Code {
		t.Errorf("create again: code %d", got[0].ErrorCode)
	}
	if got := create(true, topic("validated", 1)); got[0].ErrorCode != 0 {
		t.Errorf("validate only: code %d", got[0].ErrorCode)
	}

	dc := kmsg.NewPtrDescribeConfigsRequest()
	r := kmsg.NewDescribeConfigsRequestResource()
	r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, "ok"
	dc.Resources = append(dc.Resources, r)
	r.ResourceName = "validated" // validate only created nothing
	dc.Resources = append(dc.Resources, r)
	dresp, err := dc.RequestWith(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	configs := map[string]string{}
	for _, c := range dresp.Resources[0].Configs {
		configs[c.Name] = *c.Value
	}
	if configs["retention.ms"] != "60000" || configs["retention.bytes"] != "-1" || configs["cleanup.policy"] != "delete" {
		t.Errorf("configs of ok: %v", configs)
	}
	if dresp.Resources[1].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("configs of a topic never created: code %d", dresp.Resources[1].ErrorCode)
	}

	cl, err := kmsg.NewPtrDescribeClusterRequest().RequestWith(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.Brokers) != 1 || cl.Brokers[0].NodeID != shale.MemberID("admin") || cl.ControllerID != cl.Brokers[0].NodeID {
		t.Errorf("describe cluster: %+v", cl)
	}

	del := kmsg.NewPtrDeleteTopicsRequest()
	for _, name := range []string{"ok", "nope"} { // v6: by name in Topics
		dt := kmsg.NewDeleteTopicsRequestTopic()
		dt.Topic = str(name)
		del.Topics = append(del.Topics, dt)
	}
	delResp, err := del.RequestWith(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int16{}
	for _, rt := range delResp.Topics {
		codes[*rt.Topic] = rt.ErrorCode
	}
	if codes["ok"] != 0 || codes["nope"] != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("delete: %v", codes)
	}
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = str("ok")
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if mresp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("metadata of a deleted topic: code %d", mresp.Topics[0].ErrorCode)
	}
}
