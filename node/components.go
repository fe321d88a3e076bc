package node

import "context"

// BuildComponents adds the actors of the node's config: the sources, the
// transform and the sinks.
func BuildComponents(ctx context.Context, n *Node) error {
	return nil
}

// KnownTypes is every source and sink type this build of sluice has.
func KnownTypes() Types {
	return Types{Sources: map[string]ComponentType{}, Sinks: map[string]ComponentType{}}
}
