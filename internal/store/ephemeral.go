package store

import "github.com/nats-io/nats.go"

// Ephemeral messages (typing notifications) go between nodes over core NATS and are never
// stored: losing one costs nothing.
const ephemeralPrefix = "fb.ephemeral."

// PublishEphemeral sends data to every node subscribed to topic.
func (s *Store) PublishEphemeral(topic string, data []byte) error {
	return s.nc.Publish(ephemeralPrefix+Key(topic), data)
}

// SubscribeEphemeral calls fn for every message on topic until the returned stop is called.
func (s *Store) SubscribeEphemeral(topic string, fn func([]byte)) (stop func(), err error) {
	sub, err := s.nc.Subscribe(ephemeralPrefix+Key(topic), func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, err
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
