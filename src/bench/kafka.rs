//! `ringmq bench produce --kafka ADDRESS`: the same producer as the native
//! one (the same batches, the same pipeline depth), speaking Kafka's Produce
//! v8 to the Kafka listener. It measures the listener, not a Kafka client's
//! own costs: run it beside the native producer and the two figures differ
//! only by the protocol path in the server.

use super::{build_batch, histogram, instant_ns, record_us, Pacer, Run, Workload};
use crate::client::Socket;
use crate::kafka::{api, Reader, Writer, SIZE_BYTES};
use crate::log::Acks;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Produce's version: the last without flexible encoding.
const PRODUCE_VERSION: i16 = 8;
/// The request's timeout_ms (how long an acks=all produce may wait).
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Largest response read: a one-partition produce answer is under 100 bytes.
const RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// Longest topic name read back from a response.
const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Record errors read back from one partition's answer.
const RECORD_ERRORS_MAX: usize = 1024;
const CLIENT_ID: &str = "ringmq-bench";

fn kafka_acks(acks: Acks) -> i16 {
    match acks {
        Acks::None => 0,
        Acks::Written => 1,
        Acks::Durable => -1,
    }
}

/// One Produce v8 request frame: `batch` for `topic`/`partition`.
fn produce_frame(correlation_id: i32, acks: Acks, topic: &str, partition: u32, batch: &[u8]) -> Vec<u8> {
    let mut writer = Writer::new(false);
    writer.i32(0); // the size, filled in below
    writer.i16(api::PRODUCE);
    writer.i16(PRODUCE_VERSION);
    writer.i32(correlation_id);
    writer.nullable_string(Some(CLIENT_ID));
    writer.nullable_string(None); // transactional_id
    writer.i16(kafka_acks(acks));
    writer.i32(PRODUCE_TIMEOUT_MS);
    writer.array(1);
    writer.string(topic);
    writer.array(1);
    writer.i32(partition as i32);
    writer.bytes(batch);
    let mut frame = writer.into_inner();
    let size = (frame.len() - SIZE_BYTES) as i32;
    frame[..SIZE_BYTES].copy_from_slice(&size.to_be_bytes());
    frame
}

/// The first error code in a Produce v8 response, 0 when every partition took
/// its batch.
fn produce_error(body: &[u8]) -> Result<i16, String> {
    let bad = |e: crate::kafka::DecodeError| format!("unreadable produce response: {e}");
    let mut reader = Reader::new(body, false);
    reader.i32().map_err(bad)?; // correlation_id
    let topics = reader.array(1, 6).map_err(bad)?;
    for _ in 0..topics {
        reader.string(TOPIC_NAME_BYTES_MAX).map_err(bad)?;
        let partitions = reader.array(1, 30).map_err(bad)?;
        for _ in 0..partitions {
            reader.i32().map_err(bad)?; // index
            let error = reader.i16().map_err(bad)?;
            if error != 0 {
                return Ok(error);
            }
            reader.i64().map_err(bad)?; // base_offset
            reader.i64().map_err(bad)?; // log_append_time_ms
            reader.i64().map_err(bad)?; // log_start_offset
            let record_errors = reader.array(RECORD_ERRORS_MAX, 6).map_err(bad)?;
            for _ in 0..record_errors {
                reader.i32().map_err(bad)?;
                reader.nullable_string(RESPONSE_BYTES_MAX).map_err(bad)?;
            }
            reader.nullable_string(RESPONSE_BYTES_MAX).map_err(bad)?; // error_message
        }
    }
    Ok(0)
}

fn receive(stream: &mut Socket, body: &mut Vec<u8>) -> Result<(), String> {
    let lost = |e: std::io::Error| format!("the Kafka listener's connection failed: {e}");
    let mut size = [0u8; SIZE_BYTES];
    stream.read_exact(&mut size).map_err(lost)?;
    let size = i32::from_be_bytes(size);
    let size = usize::try_from(size).ok().filter(|s| *s <= RESPONSE_BYTES_MAX).ok_or_else(|| {
        format!("the Kafka listener sent a response of {size} bytes (at most {RESPONSE_BYTES_MAX} expected)")
    })?;
    body.resize(size, 0);
    stream.read_exact(body).map_err(lost)
}

/// One producer over the Kafka listener at `address`: sends its share of the
/// records to its partitions, `in_flight` requests at a time.
pub(super) fn produce(run: &Run, address: &str, partitions: Vec<u32>, quota: u64) -> Result<(), String> {
    let config = &run.config;
    let cannot = |e: &dyn std::fmt::Display| format!("cannot connect to the Kafka listener at {address}: {e}");
    let resolved = address.to_socket_addrs().map_err(|e| cannot(&e))?.next().ok_or_else(|| cannot(&"no address"))?;
    let tls = match &config.connect.tls {
        Some(tls) => {
            Some(tls.load(address.rsplit_once(':').map_or(address, |(host, _)| host)).map_err(|e| cannot(&e))?)
        }
        None => None,
    };
    let mut stream =
        Socket::connect(resolved, tls.as_ref()).map_err(|e| cannot(&crate::client::ClientError::from(e)))?;
    let rate = config.rate.map(|r| r as f64 / config.producers as f64);
    let depth = if rate.is_some() { usize::MAX } else { config.in_flight.max(1) };
    let mut pacer = Pacer::new(rate, config.batch_records);
    let mut local = histogram();
    let mut pending: VecDeque<Instant> = VecDeque::new();
    let mut body = Vec::new();
    let acknowledged = config.acks != Acks::None;
    let mut receive_one = |stream: &mut Socket, pending: &mut VecDeque<Instant>, local: &mut _| {
        receive(stream, &mut body)?;
        let scheduled = pending.pop_front().unwrap_or_else(Instant::now);
        match produce_error(&body)? {
            0 => {}
            error => return Err(format!("produce failed with Kafka error code {error}")),
        }
        if run.measuring() && config.workload == Workload::Produce {
            record_us(local, scheduled.elapsed().as_micros() as u64);
        }
        Ok::<(), String>(())
    };
    let mut sent = 0u64;
    let mut correlation_id = 0i32;
    while sent < quota && !run.stop.load(Ordering::Relaxed) {
        let partition = partitions[correlation_id as usize % partitions.len()];
        if acknowledged && pending.len() >= depth {
            receive_one(&mut stream, &mut pending, &mut local)?;
        }
        let scheduled = pacer.next();
        let batch = build_batch(config.batch_records, config.message_bytes, instant_ns(scheduled));
        let frame = produce_frame(correlation_id, config.acks, &config.topic, partition, &batch);
        correlation_id = correlation_id.wrapping_add(1);
        stream.write_all(&frame).map_err(|e| format!("the Kafka listener's connection failed: {e}"))?;
        if acknowledged {
            pending.push_back(scheduled);
        } else if run.measuring() && config.workload == Workload::Produce {
            record_us(&mut local, scheduled.elapsed().as_micros() as u64);
        }
        sent += config.batch_records as u64;
        run.produced.fetch_add(config.batch_records as u64, Ordering::Relaxed);
    }
    while !pending.is_empty() {
        receive_one(&mut stream, &mut pending, &mut local)?;
    }
    run.merge(&local);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_decodes_as_the_listener_reads_it() {
        let frame = produce_frame(7, Acks::Written, "t", 3, b"batch-bytes");
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - SIZE_BYTES);
        let (header, header_bytes) = crate::kafka::parse_header(&frame[SIZE_BYTES..]).unwrap();
        assert_eq!((header.api_key, header.api_version, header.correlation_id), (api::PRODUCE, 8, 7));
        let request = crate::kafka::messages::decode_produce(&frame[SIZE_BYTES + header_bytes..], 8).unwrap();
        assert_eq!(request.acks, 1);
        assert_eq!(request.topics.len(), 1);
        assert_eq!(request.topics[0].name, "t");
        assert_eq!(request.topics[0].partitions[0].index, 3);
        let records = &request.topics[0].partitions[0];
        let body = &frame[SIZE_BYTES + header_bytes..];
        assert_eq!(&body[records.position..records.position + records.length], b"batch-bytes");
    }

    #[test]
    fn a_response_error_is_found_and_a_truncated_response_refused() {
        let mut writer = Writer::new(false);
        writer.i32(7);
        writer.array(1);
        writer.string("t");
        writer.array(1);
        writer.i32(0);
        writer.i16(0);
        writer.i64(10);
        writer.i64(-1);
        writer.i64(0);
        writer.array(0);
        writer.nullable_string(None);
        writer.i32(0); // throttle_time_ms
        let ok = writer.into_inner();
        assert_eq!(produce_error(&ok), Ok(0));
        for cut in 0..ok.len() - 4 {
            assert!(produce_error(&ok[..cut]).is_err(), "a response cut at {cut} bytes was read");
        }
        let mut failed = ok.clone();
        failed[4 + 4 + 2 + 1 + 4 + 4..][..2].copy_from_slice(&3i16.to_be_bytes());
        assert_eq!(produce_error(&failed), Ok(3));
    }
}
