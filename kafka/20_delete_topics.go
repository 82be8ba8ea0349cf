package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteTopics: v0-6, by name (v6 also by topic id). The topic's objects
// stay until the compactor collects them.

func init() { regKey(20, 0, 6, handleDeleteTopics) }

func handleDeleteTopics(s *Server, _ *conn, kreq kmsg.Request) (func() kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if req.Version >= 6 {
		for _, t := range req.Topics {
			targets = append(targets, target{t.Topic, t.TopicID})
		}
	} else {
		for i := range req.TopicNames {
			targets = append(targets, target{name: &req.TopicNames[i]})
		}
	}
	for _, tg := range targets {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.TopicID = tg.id
		name := ""
		if tg.name != nil {
			name = *tg.name
		} else {
			for _, t := range s.node.Log.Topics() {
				if topicID(t.ID) == tg.id {
					name = t.Name
				}
			}
			if name == "" {
				st.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
		}
		st.Topic = &name
		ctx, cancel := context.WithTimeout(s.ctx, s.node.Opts.StoreTimeout)
		err := s.node.Log.DeleteTopic(ctx, name)
		cancel()
		st.ErrorCode, st.ErrorMessage = code(err), errMsg(err)
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp), nil
}
