package sandbox

import (
	"encoding/json"
	"errors"
)

// The data-store helpers keep Jibril's semantics: string values, one namespace per recipe,
// DataKeys/DataValues as JSON array strings, DataPush/DataPop a LIFO list.

func (inv *invocation) ns() string { return inv.p.r.Recipe }

func need(args []string, n int, usage string) error {
	if len(args) < n {
		return errors.New(usage)
	}
	return nil
}

func hDataSet(inv *invocation, args []string) (any, error) {
	if err := need(args, 2, "DataSet(key, value) needs two arguments"); err != nil {
		return nil, err
	}
	if err := inv.env.World.Store.Set(inv.ctx, inv.ns(), args[0], args[1]); err != nil {
		return nil, err
	}
	return 0, nil
}

func hDataGet(inv *invocation, args []string) (any, error) {
	if err := need(args, 1, "DataGet(key) needs a key"); err != nil {
		return nil, err
	}
	v, ok, err := inv.env.World.Store.Get(inv.ctx, inv.ns(), args[0])
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("no such key")
	}
	return v, nil
}

func hDataDelete(inv *invocation, args []string) (any, error) {
	if err := need(args, 1, "DataDelete(key) needs a key"); err != nil {
		return nil, err
	}
	ok, err := inv.env.World.Store.Delete(inv.ctx, inv.ns(), args[0])
	if err != nil {
		return nil, err
	}
	if !ok {
		return 1, nil
	}
	return 0, nil
}

func hDataList(keys bool) func(inv *invocation, args []string) (any, error) {
	return func(inv *invocation, _ []string) (any, error) {
		var l []string
		var err error
		if keys {
			l, err = inv.env.World.Store.Keys(inv.ctx, inv.ns())
		} else {
			l, err = inv.env.World.Store.Values(inv.ctx, inv.ns())
		}
		if err != nil {
			return nil, err
		}
		if l == nil {
			l = []string{}
		}
		b, err := json.Marshal(l)
		return string(b), err
	}
}

func hDataClear(inv *invocation, _ []string) (any, error) {
	n, err := inv.env.World.Store.Clear(inv.ctx, inv.ns())
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return 1, nil
	}
	return 0, nil
}

func hDataSize(inv *invocation, _ []string) (any, error) {
	return inv.env.World.Store.Size(inv.ctx, inv.ns())
}

func hDataIsEmpty(inv *invocation, _ []string) (any, error) {
	n, err := inv.env.World.Store.Size(inv.ctx, inv.ns())
	return n == 0, err
}

func hDataHasKey(inv *invocation, args []string) (any, error) {
	if err := need(args, 1, "DataHasKey(key) needs a key"); err != nil {
		return nil, err
	}
	_, ok, err := inv.env.World.Store.Get(inv.ctx, inv.ns(), args[0])
	return ok, err
}

func hDataHasValue(inv *invocation, args []string) (any, error) {
	if err := need(args, 1, "DataHasValue(value) needs a value"); err != nil {
		return nil, err
	}
	return inv.env.World.Store.HasValue(inv.ctx, inv.ns(), args[0])
}

// DataPush(v) pushes onto the default list, DataPush(list, v) onto a named one: Jibril's
// documentation and its own tests disagree, so both arities are accepted.
func hDataPush(inv *invocation, args []string) (any, error) {
	list, v := "", ""
	switch len(args) {
	case 0:
		return nil, errors.New("DataPush([list,] value) needs a value")
	case 1:
		v = args[0]
	default:
		list, v = args[0], args[1]
	}
	if err := inv.env.World.Store.Push(inv.ctx, inv.ns(), list, v); err != nil {
		return nil, err
	}
	return 0, nil
}

func hDataPop(inv *invocation, args []string) (any, error) {
	list := ""
	if len(args) > 0 {
		list = args[0]
	}
	v, ok, err := inv.env.World.Store.Pop(inv.ctx, inv.ns(), list)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("the list is empty")
	}
	return v, nil
}
