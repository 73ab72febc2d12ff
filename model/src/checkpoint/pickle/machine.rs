//! The pickle virtual machine: one opcode per [`Machine::step`], nothing executed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::{dismantle, Value};

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

/// Runs the machine to its STOP; the one value left on the stack.
pub(super) fn run(data: &[u8]) -> Result<Value, String> {
    let mut machine = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    while machine.step()? {}
    match machine.stack.len() {
        1 => Ok(machine.stack.pop().expect("one value")),
        n => Err(format!(
            "pickle ended with {n} values on the stack, expected 1"
        )),
    }
}
