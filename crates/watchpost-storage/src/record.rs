//! The WAL record of one acknowledged append: a small JSON header (workspace,
//! table, idempotency key, receipt) followed by the rows as an Arrow IPC
//! stream. The storage crate owns this format; the WAL sees opaque bytes.

use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use watchpost_wal::RecordBuf;

use crate::{Receipt, StorageError, StorageResult};

/// The header of an append record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RecordHeader {
    pub workspace: String,
    pub table: String,
    pub idempotency_key: Option<String>,
    pub receipt: Receipt,
    /// When the append was received, nanoseconds since the Unix epoch.
    pub received_ns: i64,
}

/// Encodes a record as `u32 header length | header JSON | Arrow IPC stream`,
/// straight into a WAL frame buffer.
pub(crate) fn encode(header: &RecordHeader, batch: &RecordBatch) -> StorageResult<RecordBuf> {
    let header_json = serde_json::to_vec(header).expect("record header serializes");
    let mut bytes = RecordBuf::with_capacity(batch.get_array_memory_size() + header_json.len() + 1024);
    bytes.extend_from_slice(&(header_json.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&header_json);
    let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema()).map_err(StorageError::arrow)?;
    writer.write(batch).map_err(StorageError::arrow)?;
    writer.finish().map_err(StorageError::arrow)?;
    drop(writer);
    Ok(bytes)
}

/// Decodes a record written by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> StorageResult<(RecordHeader, Vec<RecordBatch>)> {
    let corrupt = |what: &str| StorageError::CorruptRecord(what.to_string());
    let header_len = bytes.get(..4).ok_or_else(|| corrupt("short header"))?;
    let header_len = u32::from_le_bytes(header_len.try_into().expect("four bytes")) as usize;
    let header_bytes = bytes.get(4..4 + header_len).ok_or_else(|| corrupt("header past end"))?;
    let header: RecordHeader = serde_json::from_slice(header_bytes).map_err(|err| corrupt(&err.to_string()))?;
    let reader = StreamReader::try_new(Cursor::new(&bytes[4 + header_len..]), None).map_err(StorageError::arrow)?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(StorageError::arrow)?;
    Ok((header, batches))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn record_round_trips() {
        let schema =
            Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("b", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(StringArray::from(vec![Some("x"), None]))],
        )
        .unwrap();
        let header = RecordHeader {
            workspace: "w".into(),
            table: "T_CL".into(),
            idempotency_key: Some("k".into()),
            receipt: Receipt { rows: 2, columns: vec!["a".into(), "b".into()] },
            received_ns: 5,
        };
        let bytes = encode(&header, &batch).unwrap();
        let (decoded, batches) = decode(bytes.payload()).unwrap();
        assert_eq!(decoded.table, "T_CL");
        assert_eq!(decoded.receipt.rows, 2);
        assert_eq!(batches, vec![batch]);
        assert!(decode(&bytes.payload()[..3]).is_err());
    }
}
