package kv

import "context"

// The methods below are the contract every front end relies on; see service.go.
var _ interface {
	Get(ctx context.Context, key string, o ReadOptions) (*Record, error)
	List(ctx context.Context, prefix string, o ListOptions) (*ListResult, error)
	Put(ctx context.Context, key string, value []byte, o PutOptions) (*Record, error)
	Delete(ctx context.Context, key string, o DeleteOptions) (deleted, revision int64, err error)
	Patch(ctx context.Context, key string, patch []byte) (*Record, error)
	Txn(ctx context.Context, t Txn) (*TxnResult, error)
	Members(ctx context.Context) ([]Member, error)
	AddMember(ctx context.Context, m MemberSpec) error
	RemoveMember(ctx context.Context, name string) error
	PromoteMember(ctx context.Context, name string) error
	TransferLeadership(ctx context.Context, to string) error
	Status(ctx context.Context) (*Status, error)
	Ready() error
} = (*Service)(nil)
