//! Builds small `torch.save`-style zip archives for tests (pickle protocol 2).

use std::io::Write;

/// One tensor entry of a state dict as torch pickles it.
pub struct TensorSpec<'a> {
    pub key: &'a str,
    /// e.g. "FloatStorage", "HalfStorage", "LongStorage".
    pub storage_type: &'a str,
    pub storage_key: &'a str,
    pub storage_numel: usize,
    pub offset: usize,
    pub shape: &'a [usize],
    pub stride: &'a [usize],
    /// Wrap in `torch._utils._rebuild_parameter` like a saved nn.Parameter.
    pub parameter: bool,
}

fn unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn int(out: &mut Vec<u8>, v: usize) {
    out.push(b'J');
    out.extend((v as i32).to_le_bytes());
}

fn int_tuple(out: &mut Vec<u8>, values: &[usize]) {
    out.push(b'(');
    for &v in values {
        int(out, v);
    }
    out.push(b't');
}

/// The `data.pkl` of an OrderedDict state dict.
pub fn state_dict_pickle(tensors: &[TensorSpec]) -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(".to_vec();
    for t in tensors {
        unicode(&mut p, t.key);
        if t.parameter {
            p.extend(b"ctorch._utils\n_rebuild_parameter\n(");
        }
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        unicode(&mut p, "storage");
        p.extend(format!("ctorch\n{}\n", t.storage_type).as_bytes());
        unicode(&mut p, t.storage_key);
        unicode(&mut p, "cpu");
        int(&mut p, t.storage_numel);
        p.extend(b"tQ");
        int(&mut p, t.offset);
        int_tuple(&mut p, t.shape);
        int_tuple(&mut p, t.stride);
        p.extend(b"\x89h\x00)RtR");
        if t.parameter {
            p.extend(b"\x88h\x00)RtR");
        }
    }
    p.extend(b"u.");
    p
}

/// A zip archive with `<top>/data.pkl`, `<top>/byteorder` and `<top>/data/<key>` files.
pub fn torch_zip(top: &str, pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file(format!("{top}/data.pkl"), opts).unwrap();
        zip.write_all(pickle).unwrap();
        zip.start_file(format!("{top}/byteorder"), opts).unwrap();
        zip.write_all(b"little").unwrap();
        for (key, bytes) in storages {
            zip.start_file(format!("{top}/data/{key}"), opts).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.start_file(format!("{top}/version"), opts).unwrap();
        zip.write_all(b"3\n").unwrap();
        zip.finish().unwrap();
    }
    buf.into_inner()
}

/// Every entry of a zip archive as (name, bytes).
pub fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().to_string(), data)
        })
        .collect()
}

/// Re-zips entries, renaming the top folder and optionally replacing data.pkl.
pub fn rezip(entries: &[(String, Vec<u8>)], new_top: &str, pickle: Option<&[u8]>) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, data) in entries {
            let rest = name.split_once('/').map_or(name.as_str(), |(_, r)| r);
            zip.start_file(format!("{new_top}/{rest}"), opts).unwrap();
            match (rest, pickle) {
                ("data.pkl", Some(p)) => zip.write_all(p).unwrap(),
                _ => zip.write_all(data).unwrap(),
            }
        }
        zip.finish().unwrap();
    }
    buf.into_inner()
}
