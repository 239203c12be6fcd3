package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// mediaBucket is the object store that holds uploaded media, replicated like everything else.
const mediaBucket = "fb_media"

// objectPutLimit bounds one upload's storing: a slow client's largest file, at 1 Mbit/s.
const objectPutLimit = 15 * time.Minute

func (s *Store) openMedia(ctx context.Context) error {
	obj, err := s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: mediaBucket, Storage: jetstream.FileStorage, Replicas: s.opts.Replicas})
	if err != nil {
		return fmt.Errorf("create object store %s: %w", mediaBucket, err)
	}
	s.media = obj
	return nil
}

// Object is a stored object's description.
type Object struct {
	Name     string
	Size     int64
	Metadata map[string]string
}

// PutObject stores what r holds under name with its metadata, replacing any object of that
// name (callers name objects so that none is replaced). A read of r that fails stores nothing.
func (s *Store) PutObject(ctx context.Context, name string, metadata map[string]string, r io.Reader) (Object, error) {
	if err := checkKey(name); err != nil {
		return Object{}, err
	}
	// Not the caller's cancellation: a client that goes away mid-upload ends r with an error,
	// and the object store then deletes the chunks it stored, which needs a live context.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), objectPutLimit)
	defer cancel()
	info, err := s.media.Put(ctx, jetstream.ObjectMeta{Name: name, Metadata: metadata}, r)
	if err != nil {
		return Object{}, translate(err)
	}
	return Object{Name: info.Name, Size: int64(info.Size), Metadata: info.Metadata}, nil
}

// GetObject opens a stored object for reading; ErrNotFound when there is none. The caller
// closes the reader.
func (s *Store) GetObject(ctx context.Context, name string) (io.ReadCloser, Object, error) {
	if err := checkKey(name); err != nil {
		return nil, Object{}, err
	}
	res, err := s.media.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, Object{}, ErrNotFound
	} else if err != nil {
		return nil, Object{}, translate(err)
	}
	info, err := res.Info()
	if err != nil {
		_ = res.Close()
		return nil, Object{}, translate(err)
	}
	return res, Object{Name: info.Name, Size: int64(info.Size), Metadata: info.Metadata}, nil
}
