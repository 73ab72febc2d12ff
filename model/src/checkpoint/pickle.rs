//! A small pickle reader for what `torch.save` writes (protocols 2-5).
//!
//! Nothing is executed: `GLOBAL` becomes a name, `REDUCE` a recorded call
//! (`Call(func, args)`), `BINPERSID` a recorded persistent id. The one exception is
//! `collections.OrderedDict()`, which becomes a plain dict so `SETITEMS` can fill it.
//! The torch layer (`torch_zip`) interprets the recorded calls it knows.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

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

/// The machine's state: the stack, the marks and the memo.
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        let mut all = std::mem::take(&mut self.stack);
        all.extend(self.memo.drain().map(|(_, v)| v));
        dismantle(all);
    }
}

type Step<T> = Result<T, String>;

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("pickle truncated at byte {}", self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Step<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Step<u64> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as u64)
    }

    fn u32(&mut self) -> Step<u64> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
    }

    fn u64(&mut self) -> Step<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn line(&mut self) -> Step<&'a str> {
        let rest = &self.data[self.pos..];
        let len = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("pickle truncated inside a text line")?;
        let text =
            std::str::from_utf8(&rest[..len]).map_err(|_| "pickle text line is not UTF-8")?;
        self.pos += len + 1;
        Ok(text)
    }

    fn utf8(&mut self, len: u64) -> Step<Value> {
        let len = usize::try_from(len).map_err(|_| "pickle string too long")?;
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| "pickle string is not UTF-8")?;
        Ok(Value::Str(s.into()))
    }

    fn bytes(&mut self, len: u64) -> Step<Value> {
        let len = usize::try_from(len).map_err(|_| "pickle bytes too long")?;
        Ok(Value::Bytes(self.take(len)?.into()))
    }

    fn pop(&mut self) -> Step<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(format!("pickle stack underflow at byte {}", self.pos));
        }
        Ok(self.stack.pop().expect("checked non-empty"))
    }

    fn top(&mut self) -> Step<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| format!("pickle stack empty at byte {}", self.pos))
    }

    /// Pops everything above the last MARK, and the mark.
    fn pop_to_mark(&mut self) -> Step<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| format!("pickle has no MARK at byte {}", self.pos))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn memo_put(&mut self, index: u64) -> Step<()> {
        let value = self.top()?.clone();
        self.memo.insert(index, value);
        Ok(())
    }

    fn memo_get(&mut self, index: u64) -> Step<()> {
        let value = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| format!("pickle memo has no entry {index}"))?;
        self.stack.push(value);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Step<()> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        let Value::Dict(dict) = self.top()? else {
            return Err(format!("SETITEMS on a non-dict at byte {}", self.pos));
        };
        let dict = dict.clone();
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            dict.borrow_mut().push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Step<()> {
        let Value::List(list) = self.top()? else {
            return Err(format!("APPENDS on a non-list at byte {}", self.pos));
        };
        let list = list.clone();
        list.borrow_mut().extend(items);
        Ok(())
    }

    fn reduce(&mut self) -> Step<()> {
        let args = self.pop()?;
        let func = self.pop()?;
        let value = match &func {
            // OrderedDict() is a dict that SETITEMS will fill.
            Value::Global(name) if &**name == "collections.OrderedDict" => {
                Value::Dict(Rc::new(RefCell::new(Vec::new())))
            }
            _ => Value::Call(Rc::new((func, args))),
        };
        self.stack.push(value);
        Ok(())
    }

    fn int_bytes(&mut self, n: u64) -> Step<Value> {
        if n > 8 {
            return Err(format!("pickle integer of {n} bytes is too large"));
        }
        let bytes = self.take(n as usize)?;
        let mut buf = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
            [0xffu8; 8]
        } else {
            [0u8; 8]
        };
        buf[..bytes.len()].copy_from_slice(bytes);
        Ok(Value::Int(i64::from_le_bytes(buf)))
    }

    /// Executes one opcode; returns false at STOP.
    fn step(&mut self) -> Step<bool> {
        let at = self.pos;
        let op = self.u8()?;
        match op {
            0x80 => {
                let proto = self.u8()?;
                if proto > 5 {
                    return Err(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                self.u64()?; // FRAME: a length hint only
            }
            b'.' => return Ok(false),
            b'(' => self.marks.push(self.stack.len()),
            b'}' => self.stack.push(Value::Dict(Rc::default())),
            b']' => self.stack.push(Value::List(Rc::default())),
            b')' => self.stack.push(Value::Tuple(Rc::default())),
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            b'K' => {
                let v = self.u8()?;
                self.stack.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = self.u16()?;
                self.stack.push(Value::Int(v as i64));
            }
            b'J' => {
                let b = self.take(4)?;
                let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                self.stack.push(Value::Int(v as i64));
            }
            0x8a => {
                let n = self.u8()? as u64;
                let v = self.int_bytes(n)?;
                self.stack.push(v);
            }
            0x8b => {
                let n = self.u32()?;
                let v = self.int_bytes(n)?;
                self.stack.push(v);
            }
            b'G' => {
                let b = self.take(8)?;
                let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                self.stack.push(Value::Float(v));
            }
            b'X' => {
                let n = self.u32()?;
                let v = self.utf8(n)?;
                self.stack.push(v);
            }
            0x8c => {
                let n = self.u8()? as u64;
                let v = self.utf8(n)?;
                self.stack.push(v);
            }
            0x8d => {
                let n = self.u64()?;
                let v = self.utf8(n)?;
                self.stack.push(v);
            }
            b'U' | b'C' => {
                let n = self.u8()? as u64;
                let v = self.bytes(n)?;
                self.stack.push(v);
            }
            b'T' | b'B' => {
                let n = self.u32()?;
                let v = self.bytes(n)?;
                self.stack.push(v);
            }
            0x8e => {
                let n = self.u64()?;
                let v = self.bytes(n)?;
                self.stack.push(v);
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.stack
                    .push(Value::Global(format!("{module}.{name}").into()));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module.as_str(), name.as_str()) {
                    (Some(m), Some(n)) => self.stack.push(Value::Global(format!("{m}.{n}").into())),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                self.stack.push(Value::PersistentId(Rc::new(pid)));
            }
            b't' => {
                let items = self.pop_to_mark()?;
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            b'l' => {
                let items = self.pop_to_mark()?;
                self.stack.push(Value::List(Rc::new(RefCell::new(items))));
            }
            b'd' => {
                let items = self.pop_to_mark()?;
                self.stack.push(Value::Dict(Rc::default()));
                self.set_items(items)?;
            }
            b'R' | 0x81 => self.reduce()?,
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])?;
            }
            b'u' => {
                let items = self.pop_to_mark()?;
                self.set_items(items)?;
            }
            b'a' => {
                let v = self.pop()?;
                self.append(vec![v])?;
            }
            b'e' => {
                let items = self.pop_to_mark()?;
                self.append(items)?;
            }
            b'b' => {
                // BUILD sets an object's state; state dicts only carry `_metadata` there.
                let state = self.pop()?;
                self.top()?;
                dismantle(vec![state]);
            }
            b'0' => {
                let v = self.pop()?;
                dismantle(vec![v]);
            }
            b'2' => {
                let v = self.top()?.clone();
                self.stack.push(v);
            }
            b'1' => {
                let v = self.pop_to_mark()?;
                dismantle(v);
            }
            b'q' => {
                let i = self.u8()? as u64;
                self.memo_put(i)?;
            }
            b'r' => {
                let i = self.u32()?;
                self.memo_put(i)?;
            }
            0x94 => {
                let i = self.memo.len() as u64;
                self.memo_put(i)?;
            }
            b'p' => {
                let i = self.line()?.parse().map_err(|_| "bad PUT index")?;
                self.memo_put(i)?;
            }
            b'h' => {
                let i = self.u8()? as u64;
                self.memo_get(i)?;
            }
            b'j' => {
                let i = self.u32()?;
                self.memo_get(i)?;
            }
            b'g' => {
                let i = self.line()?.parse().map_err(|_| "bad GET index")?;
                self.memo_get(i)?;
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x} at byte {at}"
                ))
            }
        }
        Ok(true)
    }
}

/// Runs a pickle to its STOP and returns the value it leaves.
pub(crate) fn unpickle(data: &[u8]) -> Result<Unpickled, String> {
    let mut machine = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    while machine.step()? {}
    match machine.stack.len() {
        1 => Ok(Unpickled {
            root: machine.stack.pop().expect("one value"),
        }),
        n => Err(format!(
            "pickle ended with {n} values on the stack, expected 1"
        )),
    }
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
