//! A small pickle reader for what `torch.save` writes (protocols 2-5).
//!
//! Nothing is executed: `GLOBAL` becomes a name, `REDUCE` a recorded call
//! (`Call(func, args)`), `BINPERSID` a recorded persistent id. The one exception is
//! `collections.OrderedDict()`, which becomes a plain dict so `SETITEMS` can fill it.
//! The torch layer (`torch_zip`) interprets the recorded calls it knows.

use std::cell::RefCell;
use std::rc::Rc;

mod machine;

/// A pickled value. Containers are reference-counted because the memo shares them.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// `module.name` of a GLOBAL / STACK_GLOBAL.
    Global(Rc<str>),
    /// REDUCE / NEWOBJ: (callable, args).
    Call(Rc<(Value, Value)>),
    /// BINPERSID: the persistent id (torch: a tuple describing a storage).
    PersistentId(Rc<Value>),
}

impl Value {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// A short description for error messages (never recursive).
    pub(crate) fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(v) => format!("float {v}"),
            Value::Str(_) => "str".into(),
            Value::Bytes(b) => format!("{} bytes", b.len()),
            Value::Tuple(t) => format!("tuple of {}", t.len()),
            Value::List(_) => "list".into(),
            Value::Dict(_) => "dict".into(),
            Value::Global(g) => format!("global {g}"),
            Value::Call(c) => match &c.0 {
                Value::Global(g) => format!("object built by {g}"),
                _ => "object".into(),
            },
            Value::PersistentId(_) => "persistent id".into(),
        }
    }
}

/// Takes apart a value tree without recursion, so a deeply nested (hostile) pickle
/// cannot overflow the stack when it is dropped. (A container made to hold itself is
/// a reference cycle and is leaked, not freed: bounded by the pickle's size.)
fn dismantle(mut work: Vec<Value>) {
    while let Some(value) = work.pop() {
        match value {
            Value::Tuple(rc) => {
                if let Ok(items) = Rc::try_unwrap(rc) {
                    work.extend(items);
                }
            }
            // Only the last owner takes a container apart: others still use it.
            Value::List(rc) => {
                if let Ok(items) = Rc::try_unwrap(rc) {
                    work.extend(items.into_inner());
                }
            }
            Value::Dict(rc) => {
                if let Ok(items) = Rc::try_unwrap(rc) {
                    for (k, v) in items.into_inner() {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            Value::Call(rc) => {
                if let Ok((f, a)) = Rc::try_unwrap(rc) {
                    work.push(f);
                    work.push(a);
                }
            }
            Value::PersistentId(rc) => {
                if let Ok(v) = Rc::try_unwrap(rc) {
                    work.push(v);
                }
            }
            _ => {}
        }
    }
}

/// The result of unpickling; dropping it takes the tree apart iteratively.
pub(crate) struct Unpickled {
    pub(crate) root: Value,
}

impl Drop for Unpickled {
    fn drop(&mut self) {
        dismantle(vec![std::mem::replace(&mut self.root, Value::None)]);
    }
}

/// Runs a pickle to its STOP and returns the value it leaves.
pub(crate) fn unpickle(data: &[u8]) -> Result<Unpickled, String> {
    Ok(Unpickled {
        root: machine::run(data)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_protocol_2_dict() {
        // {'a': (1, -2, 300, True), 'b': OrderedDict()}
        let mut p2 =
            b"\x80\x02}q\x00(X\x01\x00\x00\x00a(K\x01J\xfe\xff\xff\xffM,\x01\x88t".to_vec();
        p2.extend(b"X\x01\x00\x00\x00bccollections\nOrderedDict\n)Ru.");
        let out = unpickle(&p2).unwrap();
        let Value::Dict(d) = &out.root else {
            panic!("not a dict")
        };
        let d = d.borrow();
        assert_eq!(d.len(), 2);
        let Value::Tuple(t) = &d[0].1 else {
            panic!("not a tuple")
        };
        let ints: Vec<i64> = t.iter().map(|v| v.as_int().unwrap()).collect();
        assert_eq!(ints, vec![1, -2, 300, 1]);
        assert!(matches!(&d[1].1, Value::Dict(_)));
    }

    #[test]
    fn deep_nesting_is_dropped_without_recursion() {
        let mut p = b"\x80\x02)".to_vec();
        p.extend(std::iter::repeat_n(0x85, 1_000_000));
        p.push(b'.');
        let out = unpickle(&p).unwrap();
        drop(out);
        // And an error half-way through a deep tree also unwinds cleanly.
        p.pop();
        assert!(unpickle(&p).is_err());
        // Every level memoized: the memo and the tree share all nodes.
        let mut p = b"\x80\x02)".to_vec();
        for i in 0..300_000u32 {
            p.push(0x85);
            p.push(b'r');
            p.extend(i.to_le_bytes());
        }
        p.push(b'.');
        drop(unpickle(&p).unwrap());
    }

    #[test]
    fn long1_is_twos_complement() {
        let out = unpickle(b"\x8a\x02\x00\xff.").unwrap();
        assert_eq!(out.root.as_int(), Some(-256));
        let out = unpickle(b"\x8a\x00.").unwrap();
        assert_eq!(out.root.as_int(), Some(0));
    }
}
