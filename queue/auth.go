package queue

import (
	"fmt"
	"regexp"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"
)

// Who may do what on the NATS client port: two users, with nats-server's
// own users, nkeys and permissions.
//
//   - The node's own in-process connection has every right. It signs in
//     with an nkey made at start whose seed lives only in this process's
//     memory, and nats-server lets that key in only in-process (its allowed
//     connection types), never over TCP.
//   - OperatorUser is everyone else (the nats CLI, a dashboard): it reads
//     streams, stream and consumer info, and makes and uses consumers of its
//     own, but cannot purge, delete or change a stream, cannot touch
//     sluice's own consumers (change, delete, pull from or ack on them) and
//     cannot publish into sluice's subjects or KV buckets.
const (
	// OperatorUser is the user name NATS clients log in with.
	OperatorUser = "operator"
)

// clientAuth is the users part of the server options and how the node's own
// connection signs in.
type clientAuth struct {
	users      []*server.User
	nkeys      []*server.NkeyUser
	noAuthUser string
	node       nats.Option
}

func newClientAuth(opts Options) (clientAuth, error) {
	var a clientAuth
	nodeKey, err := nkeys.CreateUser()
	if err != nil {
		return a, fmt.Errorf("queue: node credential: %w", err)
	}
	nodePub, err := nodeKey.PublicKey()
	if err != nil {
		return a, fmt.Errorf("queue: node credential: %w", err)
	}
	a.node = nats.Nkey(nodePub, nodeKey.Sign)
	a.nkeys = []*server.NkeyUser{{Nkey: nodePub, AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}}}}
	perms := operatorPermissions(opts.Protected)
	if opts.OperatorNkey != "" {
		if !nkeys.IsValidPublicUserKey(opts.OperatorNkey) {
			return a, fmt.Errorf("queue: operator nkey %q is not a public user nkey (U…)", opts.OperatorNkey)
		}
		a.nkeys = append(a.nkeys, &server.NkeyUser{Nkey: opts.OperatorNkey, Permissions: perms})
	}
	if opts.OperatorPassword == "" && opts.OperatorNkey == "" {
		// No password (allowed on loopback only, see node.Config): a client
		// that sends no credentials is the operator, with the operator's
		// rights and no more. nats-server lets a no-auth nkey in without a
		// signature; nobody holds this one's seed.
		anyone, err := nkeys.CreateUser()
		if err != nil {
			return a, fmt.Errorf("queue: operator credential: %w", err)
		}
		pub, err := anyone.PublicKey()
		if err != nil {
			return a, fmt.Errorf("queue: operator credential: %w", err)
		}
		a.nkeys = append(a.nkeys, &server.NkeyUser{Nkey: pub, Permissions: perms})
		a.noAuthUser = pub
		return a, nil
	}
	if opts.OperatorPassword == "" {
		return a, nil
	}
	hash, err := passwordHash(opts.OperatorPassword, opts.passwordCost)
	if err != nil {
		return a, err
	}
	a.users = []*server.User{{Username: OperatorUser, Password: hash, Permissions: perms}}
	return a, nil
}

// passwordHash is what nats-server compares a client's password with: a
// bcrypt hash, so that the server keeps no plaintext password (and does not
// warn that it does). A password given already hashed (nats server passwd)
// is used as it is.
func passwordHash(pw string, cost int) (string, error) {
	if bcryptHash.MatchString(pw) {
		return pw, nil
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("queue: operator password: %w", err)
	}
	return string(h), nil
}

// bcryptHash is how nats-server tells a bcrypt hash from a password.
var bcryptHash = regexp.MustCompile(`^\$2[abxy]\$\d{2}\$`)

// operatorPermissions allows, by subject, what the operator may publish:
// JetStream API requests that read, the API of its own consumers, and acks.
// Everything else (purge, stream create/update/delete, message delete,
// snapshots, leader step-downs, publishing records) is not allowed; the
// deny list, which wins over the allow list in nats-server, keeps sluice's
// own consumers and subjects out of reach even of what is allowed.
func operatorPermissions(protected []string) *server.Permissions {
	allow := []string{
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO.*", "$JS.API.STREAM.LIST", "$JS.API.STREAM.NAMES",
		"$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>",
		"$JS.API.CONSUMER.INFO.*.*", "$JS.API.CONSUMER.LIST.*", "$JS.API.CONSUMER.NAMES.*",
		// Its own consumers: ordered and ephemeral readers (nats stream
		// view, nats sub --stream) and durables (nats consumer add).
		"$JS.API.CONSUMER.CREATE.*.>", "$JS.API.CONSUMER.DURABLE.CREATE.*.*",
		"$JS.API.CONSUMER.DELETE.*.*", "$JS.API.CONSUMER.MSG.NEXT.*.*",
		"$JS.ACK.>", "$JS.FC.>",
	}
	deny := []string{
		// The legacy ephemeral create carries the consumer's name in the
		// body, where a permission cannot see it: with a sluice name it
		// would update that consumer. Clients since nats-server 2.9 name
		// the consumer in the subject.
		"$JS.API.CONSUMER.CREATE.*",
		"raw.>", "out.>", "dlq.>",
		"$KV.>", // sluice's buckets (sluice_jobs, sluice_holds, sluice_trimmed)
	}
	for _, name := range protected {
		deny = append(deny,
			"$JS.API.CONSUMER.CREATE.*."+name, "$JS.API.CONSUMER.CREATE.*."+name+".>",
			"$JS.API.CONSUMER.DURABLE.CREATE.*."+name,
			"$JS.API.CONSUMER.DELETE.*."+name,
			"$JS.API.CONSUMER.MSG.NEXT.*."+name,
			// Acks and flow control replies, in both forms the server uses:
			// $JS.ACK.<stream>.<consumer>.… and
			// $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.…
			"$JS.ACK.*."+name+".>", "$JS.ACK.*.*.*."+name+".>",
			"$JS.FC.*."+name+".>", "$JS.FC.*.*.*."+name+".>",
		)
	}
	return &server.Permissions{Publish: &server.SubjectPermission{Allow: allow, Deny: deny}}
}
