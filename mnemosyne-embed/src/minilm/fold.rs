//! Weight dequantisation, done once at load instead of on every run.
//!
//! The int8 ONNX file stores each weight matrix `W` as an int8 tensor `W_q`
//! and a float scale `s`, and computes `W = Cast(W_q) * s` inside the graph.
//! tract does not fold that into a constant, so every inference converted
//! all 22 M weights to float again (about 75% of its time on a short query).
//! [`fold_weight_dequantisation`] evaluates each such pair once and puts
//! the float result in the graph as an initializer.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{GraphProto, ModelProto, TensorProto};

/// ONNX `TensorProto.DataType` codes used here.
const ONNX_FLOAT: i32 = 1;
const ONNX_INT8: i32 = 3;

/// Why a weight could not be folded (the file is not the expected one).
#[derive(Debug, thiserror::Error)]
#[error("cannot dequantise weight {name}: {why}")]
pub struct FoldError {
    name: String,
    why: String,
}

/// Replaces every `Mul(Cast(int8 initializer), float initializer)` by one
/// float initializer; returns how many it replaced.
pub fn fold_weight_dequantisation(model: &mut ModelProto) -> Result<usize, FoldError> {
    let Some(graph) = model.graph.as_mut() else {
        return Ok(0);
    };
    let folds = find_folds(graph);
    let mut dropped_nodes = HashSet::new();
    let mut dropped_initializers = HashSet::new();
    let mut folded = Vec::with_capacity(folds.len());
    for fold in &folds {
        let quantised = &graph.initializer[fold.quantised];
        let scale = &graph.initializer[fold.scale];
        folded.push(dequantise(quantised, scale, &fold.output)?);
        dropped_nodes.extend([fold.cast_node, fold.mul_node]);
        dropped_initializers.extend([quantised.name.clone(), scale.name.clone()]);
    }
    let mut index = 0;
    graph.node.retain(|_| {
        let keep = !dropped_nodes.contains(&index);
        index += 1;
        keep
    });
    // A scale shared with another node stays.
    let still_used: HashSet<&String> = graph.node.iter().flat_map(|n| &n.input).collect();
    let dropped: HashSet<String> = dropped_initializers
        .into_iter()
        .filter(|name| !still_used.contains(name))
        .collect();
    graph.initializer.retain(|t| !dropped.contains(&t.name));
    graph.initializer.extend(folded);
    Ok(folds.len())
}

/// One `Cast` + `Mul` pair to fold, by index into the graph.
struct Fold {
    cast_node: usize,
    mul_node: usize,
    quantised: usize,
    scale: usize,
    output: String,
}

fn find_folds(graph: &GraphProto) -> Vec<Fold> {
    let initializers: HashMap<&str, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let mut folds = Vec::new();
    for (cast_node, cast) in graph.node.iter().enumerate() {
        if cast.op_type != "Cast" || cast.input.len() != 1 || cast.output.len() != 1 {
            continue;
        }
        let Some(&quantised) = initializers.get(cast.input[0].as_str()) else {
            continue;
        };
        if graph.initializer[quantised].data_type != ONNX_INT8 {
            continue;
        }
        let Some([mul_node]) = consumers.get(cast.output[0].as_str()).map(Vec::as_slice) else {
            continue;
        };
        let mul = &graph.node[*mul_node];
        if mul.op_type != "Mul" || mul.input.len() != 2 || mul.output.len() != 1 {
            continue;
        }
        let scale_name = if mul.input[0] == cast.output[0] {
            &mul.input[1]
        } else {
            &mul.input[0]
        };
        let Some(&scale) = initializers.get(scale_name.as_str()) else {
            continue;
        };
        if graph.initializer[scale].data_type != ONNX_FLOAT {
            continue;
        }
        folds.push(Fold {
            cast_node,
            mul_node: *mul_node,
            quantised,
            scale,
            output: mul.output[0].clone(),
        });
    }
    folds
}

/// `quantised * scale` as a float tensor named `output`; the scale
/// broadcasts against the weight as numpy does (right-aligned, 1 or equal).
fn dequantise(
    quantised: &TensorProto,
    scale: &TensorProto,
    output: &str,
) -> Result<TensorProto, FoldError> {
    let fail = |why: String| FoldError {
        name: quantised.name.clone(),
        why,
    };
    let dims: Vec<usize> = quantised
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| fail(format!("negative dimension {d}"))))
        .collect::<Result<_, _>>()?;
    let count: usize = dims.iter().product();
    if quantised.raw_data.len() != count {
        return Err(fail(format!(
            "{} bytes of int8 data for {count} values",
            quantised.raw_data.len()
        )));
    }
    let scales: Vec<f32> = if scale.float_data.is_empty() {
        scale
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        scale.float_data.clone()
    };
    let rank = dims.len();
    if scale.dims.len() > rank {
        return Err(fail(format!("scale of rank {}", scale.dims.len())));
    }
    let mut scale_dims = vec![1usize; rank];
    for (k, &d) in scale.dims.iter().enumerate() {
        scale_dims[rank - scale.dims.len() + k] = usize::try_from(d).unwrap_or(0);
    }
    if scale_dims.iter().product::<usize>() != scales.len()
        || (0..rank).any(|k| scale_dims[k] != 1 && scale_dims[k] != dims[k])
    {
        return Err(fail(format!(
            "scale of shape {:?} does not broadcast to {dims:?}",
            scale.dims
        )));
    }
    // Strides of the scale in the weight's index space (0 where it broadcasts).
    let mut strides = vec![0usize; rank];
    let mut stride = 1;
    for k in (0..rank).rev() {
        if scale_dims[k] != 1 {
            strides[k] = stride;
        }
        stride *= scale_dims[k];
    }
    let mut raw = Vec::with_capacity(count * 4);
    // Rows of the last dimension: the scale offset of a row's first value,
    // then a fixed step along the row (0 when the scale broadcasts there).
    let row_len = dims.last().copied().unwrap_or(1).max(1);
    let step = strides.last().copied().unwrap_or(0);
    let mut index = vec![0usize; rank.saturating_sub(1)];
    for row in quantised.raw_data.chunks_exact(row_len) {
        let base: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        for (column, &byte) in row.iter().enumerate() {
            let value = f32::from(byte as i8) * scales[base + column * step];
            raw.extend_from_slice(&value.to_le_bytes());
        }
        // Next row, odometer style over the leading dimensions.
        for k in (0..index.len()).rev() {
            index[k] += 1;
            if index[k] < dims[k] {
                break;
            }
            index[k] = 0;
        }
    }
    Ok(TensorProto {
        name: output.to_owned(),
        dims: quantised.dims.clone(),
        data_type: ONNX_FLOAT,
        raw_data: raw,
        ..TensorProto::default()
    })
}

#[cfg(test)]
mod tests {
    use tract_onnx::pb::NodeProto;

    use super::*;

    fn tensor(name: &str, dims: &[i64], data_type: i32, raw: Vec<u8>) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type,
            raw_data: raw,
            ..TensorProto::default()
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..NodeProto::default()
        }
    }

    fn floats(t: &TensorProto) -> Vec<f32> {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn folds_per_row_and_per_column_scales_and_keeps_other_nodes() {
        let q: Vec<u8> = [1i8, -2, 3, -4, 5, -6].iter().map(|&v| v as u8).collect();
        let graph = GraphProto {
            node: vec![
                node("Cast", &["w_q"], "w_f"),
                node("Mul", &["w_f", "row_scale"], "w"),
                node("Cast", &["v_q"], "v_f"),
                node("Mul", &["col_scale", "v_f"], "v"),
                node("MatMul", &["x", "w"], "y"),
                node("Cast", &["x"], "x_f"),
            ],
            initializer: vec![
                tensor("w_q", &[2, 3], ONNX_INT8, q.clone()),
                tensor("row_scale", &[2, 1], ONNX_FLOAT, f32_bytes(&[0.5, 2.0])),
                tensor("v_q", &[2, 3], ONNX_INT8, q),
                tensor(
                    "col_scale",
                    &[3],
                    ONNX_FLOAT,
                    f32_bytes(&[1.0, 10.0, 100.0]),
                ),
            ],
            ..GraphProto::default()
        };
        let mut model = ModelProto {
            graph: Some(graph),
            ..ModelProto::default()
        };
        assert_eq!(fold_weight_dequantisation(&mut model).unwrap(), 2);
        let graph = model.graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["MatMul", "Cast"], "the Cast of an input stays");
        let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["w", "v"]);
        assert_eq!(
            floats(&graph.initializer[0]),
            [0.5, -1.0, 1.5, -8.0, 10.0, -12.0]
        );
        assert_eq!(
            floats(&graph.initializer[1]),
            [1.0, -20.0, 300.0, -4.0, 50.0, -600.0]
        );
    }

    #[test]
    fn a_scale_that_does_not_broadcast_is_an_error() {
        let graph = GraphProto {
            node: vec![
                node("Cast", &["w_q"], "w_f"),
                node("Mul", &["w_f", "s"], "w"),
            ],
            initializer: vec![
                tensor("w_q", &[2, 3], ONNX_INT8, vec![0; 6]),
                tensor("s", &[2], ONNX_FLOAT, f32_bytes(&[1.0, 2.0])),
            ],
            ..GraphProto::default()
        };
        let mut model = ModelProto {
            graph: Some(graph),
            ..ModelProto::default()
        };
        let err = fold_weight_dequantisation(&mut model).unwrap_err();
        assert!(err.to_string().contains("does not broadcast"), "{err}");
    }
}
