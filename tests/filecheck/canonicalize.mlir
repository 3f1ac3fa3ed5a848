// RUN: irkit-opt %s -p canonicalize | filecheck %s

// Every identity of the RULES table in passes/canonicalize.py, one function
// each, then identities that must NOT apply (false under NaN/inf, or would
// lose a broadcast or a dtype change, or lose precision).

builtin.module {

  // x + 0 -> x and 0 + x -> x
  // CHECK-LABEL: func.func @add_zero(
  // CHECK-NOT:     ik.add
  // CHECK:         func.return %x, %x : tensor<?x?xf32>, tensor<?x?xf32>
  func.func @add_zero(%x: tensor<?x?xf32>) -> (tensor<?x?xf32>, tensor<?x?xf32>) {
    %zero = ik.constant dense<0.000000e+00> : tensor<f32>
    %0 = ik.add %x, %zero : (tensor<?x?xf32>, tensor<f32>) -> tensor<?x?xf32>
    %1 = ik.add %zero, %x : (tensor<f32>, tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %0, %1 : tensor<?x?xf32>, tensor<?x?xf32>
  }

  // dim(f(x), k) -> the operand's dim the shape rule makes it: an elementwise op's result
  // (a static 1 broadcasts: the column dim comes from %x), log_softmax's; a result dim that
  // is an operand's static 1 broadcast against a dynamic one is the dynamic one's
  // (the exp, sub and log_softmax, read for their sizes only, are then dead)
  // CHECK-LABEL: func.func @dim_of_operand(
  // CHECK-NEXT:    %[[A:.*]] = ik.dim %x : (tensor<?x?xf32>) -> tensor<i64>
  // CHECK-NEXT:    %[[B:.*]] = ik.dim %x {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<i64>
  // CHECK-NEXT:    %[[C:.*]] = ik.dim %x {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<i64>
  // CHECK-NEXT:    %[[D:.*]] = ik.dim %v : (tensor<?xf32>) -> tensor<i64>
  // CHECK-NEXT:    %[[E:.*]] = ik.dim %x : (tensor<?x?xf32>) -> tensor<i64>
  // CHECK-NEXT:    func.return %[[A]], %[[B]], %[[C]], %[[D]], %[[E]] :
  func.func @dim_of_operand(%x: tensor<?x?xf32>, %r: tensor<1x?xf32>, %v: tensor<?xf32>)
      -> (tensor<i64>, tensor<i64>, tensor<i64>, tensor<i64>, tensor<i64>) {
    %0 = ik.exp %x : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.sub %0, %r : (tensor<?x?xf32>, tensor<1x?xf32>) -> tensor<?x?xf32>
    %2 = ik.log_softmax %1 {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %3 = ik.dim %0 : (tensor<?x?xf32>) -> tensor<i64>
    %4 = ik.dim %1 {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<i64>
    %5 = ik.dim %2 {axis = 1 : i64} : (tensor<?x?xf32>) -> tensor<i64>
    %6 = ik.add %v, %v : (tensor<?xf32>, tensor<?xf32>) -> tensor<?xf32>
    %7 = ik.dim %6 : (tensor<?xf32>) -> tensor<i64>
    %8 = ik.dim %2 : (tensor<?x?xf32>) -> tensor<i64>
    func.return %3, %4, %5, %7, %8 : tensor<i64>, tensor<i64>, tensor<i64>, tensor<i64>, tensor<i64>
  }

  // a dim a shape rule does not take from an operand stays (a concatenation's sum of dims)
  // CHECK-LABEL: func.func @dim_not_of_an_operand(
  // CHECK:         %[[J:.*]] = ik.concatenate
  // CHECK:         ik.dim %[[J]]
  func.func @dim_not_of_an_operand(%x: tensor<?xf32>, %y: tensor<?xf32>) -> tensor<i64> {
    %0 = ik.concatenate %x, %y {axis = 0 : i64} : (tensor<?xf32>, tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.dim %0 : (tensor<?xf32>) -> tensor<i64>
    func.return %1 : tensor<i64>
  }

  // x - 0 -> x
  // CHECK-LABEL: func.func @sub_zero(
  // CHECK-NOT:     ik.sub
  // CHECK:         func.return %x : tensor<?xf64>
  func.func @sub_zero(%x: tensor<?xf64>) -> tensor<?xf64> {
    %zero = ik.constant dense<0.000000e+00> : tensor<f64>
    %0 = ik.sub %x, %zero : (tensor<?xf64>, tensor<f64>) -> tensor<?xf64>
    func.return %0 : tensor<?xf64>
  }

  // x * 1 -> x and 1 * x -> x
  // CHECK-LABEL: func.func @mul_one(
  // CHECK-NOT:     ik.mul
  // CHECK:         func.return %x, %x : tensor<?x?xf32>, tensor<?x?xf32>
  func.func @mul_one(%x: tensor<?x?xf32>) -> (tensor<?x?xf32>, tensor<?x?xf32>) {
    %one = ik.constant dense<1.000000e+00> : tensor<f32>
    %0 = ik.mul %x, %one : (tensor<?x?xf32>, tensor<f32>) -> tensor<?x?xf32>
    %1 = ik.mul %one, %x : (tensor<f32>, tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %0, %1 : tensor<?x?xf32>, tensor<?x?xf32>
  }

  // x * 1 with integers
  // CHECK-LABEL: func.func @mul_one_int(
  // CHECK-NOT:     ik.mul
  // CHECK:         func.return %i : tensor<4xi64>
  func.func @mul_one_int(%i: tensor<4xi64>) -> tensor<4xi64> {
    %one = ik.constant dense<1> : tensor<i64>
    %0 = ik.mul %i, %one : (tensor<4xi64>, tensor<i64>) -> tensor<4xi64>
    func.return %0 : tensor<4xi64>
  }

  // x / 1 -> x
  // CHECK-LABEL: func.func @div_one(
  // CHECK-NOT:     ik.truediv
  // CHECK:         func.return %x : tensor<?x?xf32>
  func.func @div_one(%x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %one = ik.constant dense<1.000000e+00> : tensor<f32>
    %0 = ik.truediv %x, %one : (tensor<?x?xf32>, tensor<f32>) -> tensor<?x?xf32>
    func.return %0 : tensor<?x?xf32>
  }

  // -(-x) -> x, and the inner neg is dead
  // CHECK-LABEL: func.func @neg_neg(
  // CHECK-NOT:     ik.neg
  // CHECK:         func.return %x : tensor<?xf32>
  func.func @neg_neg(%x: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.neg %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.neg %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // a - (-b) -> a + b
  // CHECK-LABEL: func.func @sub_neg(
  // CHECK-NOT:     ik.neg
  // CHECK-NOT:     ik.sub
  // CHECK:         %[[R:.*]] = ik.add %a, %b : (tensor<?x3xf32>, tensor<3xf32>) -> tensor<?x3xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?x3xf32>
  func.func @sub_neg(%a: tensor<?x3xf32>, %b: tensor<3xf32>) -> tensor<?x3xf32> {
    %0 = ik.neg %b : (tensor<3xf32>) -> tensor<3xf32>
    %1 = ik.sub %a, %0 : (tensor<?x3xf32>, tensor<3xf32>) -> tensor<?x3xf32>
    func.return %1 : tensor<?x3xf32>
  }

  // a + (-b) -> a - b
  // CHECK-LABEL: func.func @add_neg(
  // CHECK-NOT:     ik.neg
  // CHECK-NOT:     ik.add
  // CHECK:         %[[R:.*]] = ik.sub %a, %b : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?x3xf32>
  func.func @add_neg(%a: tensor<?x3xf32>, %b: tensor<?x3xf32>) -> tensor<?x3xf32> {
    %0 = ik.neg %b : (tensor<?x3xf32>) -> tensor<?x3xf32>
    %1 = ik.add %a, %0 : (tensor<?x3xf32>, tensor<?x3xf32>) -> tensor<?x3xf32>
    func.return %1 : tensor<?x3xf32>
  }

  // x ** 1 -> x
  // CHECK-LABEL: func.func @pow_one(
  // CHECK-NOT:     ik.pow
  // CHECK:         func.return %x : tensor<?xf32>
  func.func @pow_one(%x: tensor<?xf32>) -> tensor<?xf32> {
    %one = ik.constant dense<1.000000e+00> : tensor<f32>
    %0 = ik.pow %x, %one : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    func.return %0 : tensor<?xf32>
  }

  // x ** 2 -> square(x)
  // CHECK-LABEL: func.func @pow_two(
  // CHECK-NOT:     ik.pow
  // CHECK:         %[[R:.*]] = ik.square %x : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @pow_two(%x: tensor<?xf32>) -> tensor<?xf32> {
    %two = ik.constant dense<2.000000e+00> : tensor<f32>
    %0 = ik.pow %x, %two : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    func.return %0 : tensor<?xf32>
  }

  // x ** 0.5 -> sqrt(x) (floats)
  // CHECK-LABEL: func.func @pow_half(
  // CHECK-NOT:     ik.pow
  // CHECK:         %[[R:.*]] = ik.sqrt %x : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @pow_half(%x: tensor<?xf32>) -> tensor<?xf32> {
    %half = ik.constant dense<5.000000e-01> : tensor<f32>
    %0 = ik.pow %x, %half : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    func.return %0 : tensor<?xf32>
  }

  // x ** 2 where the exponent broadcasts x: the type would change, so it stays
  // CHECK-LABEL: func.func @pow_two_broadcast(
  // CHECK:         ik.pow %x
  // CHECK-NOT:     ik.square
  func.func @pow_two_broadcast(%x: tensor<3xf32>) -> tensor<2x3xf32> {
    %two = ik.constant dense<2.000000e+00> : tensor<2x3xf32>
    %0 = ik.pow %x, %two : (tensor<3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
    func.return %0 : tensor<2x3xf32>
  }

  // cast(cast(x, f64), f32) -> x when the first cast is exact
  // CHECK-LABEL: func.func @cast_cast_roundtrip(
  // CHECK-NOT:     ik.cast
  // CHECK:         func.return %x : tensor<?x?xf32>
  func.func @cast_cast_roundtrip(%x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.cast %x : (tensor<?x?xf32>) -> tensor<?x?xf64>
    %1 = ik.cast %0 : (tensor<?x?xf64>) -> tensor<?x?xf32>
    func.return %1 : tensor<?x?xf32>
  }

  // cast(cast(x: i8, i64), i32) -> cast(x, i32)
  // CHECK-LABEL: func.func @cast_cast_widen(
  // CHECK-NEXT:    %[[R:.*]] = ik.cast %b : (tensor<?xi8>) -> tensor<?xi32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xi32>
  func.func @cast_cast_widen(%b: tensor<?xi8>) -> tensor<?xi32> {
    %0 = ik.cast %b : (tensor<?xi8>) -> tensor<?xi64>
    %1 = ik.cast %0 : (tensor<?xi64>) -> tensor<?xi32>
    func.return %1 : tensor<?xi32>
  }

  // cast(cast(x: f64, f32), f64) loses precision: both casts stay
  // CHECK-LABEL: func.func @cast_cast_narrowing(
  // CHECK:         %[[A:.*]] = ik.cast %x : (tensor<?xf64>) -> tensor<?xf32>
  // CHECK-NEXT:    %[[B:.*]] = ik.cast %[[A]] : (tensor<?xf32>) -> tensor<?xf64>
  // CHECK-NEXT:    func.return %[[B]] : tensor<?xf64>
  func.func @cast_cast_narrowing(%x: tensor<?xf64>) -> tensor<?xf64> {
    %0 = ik.cast %x : (tensor<?xf64>) -> tensor<?xf32>
    %1 = ik.cast %0 : (tensor<?xf32>) -> tensor<?xf64>
    func.return %1 : tensor<?xf64>
  }

  // transpose(transpose(x)) with inverse permutations -> x
  // CHECK-LABEL: func.func @transpose_transpose(
  // CHECK-NOT:     ik.transpose
  // CHECK:         func.return %x : tensor<?x?xf32>
  func.func @transpose_transpose(%x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.transpose %x {perm = array<i64: 1, 0>} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    %1 = ik.transpose %0 {perm = array<i64: 1, 0>} : (tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %1 : tensor<?x?xf32>
  }

  // transpose(transpose(t, p), q) -> transpose(t, p o q): (1,2,0) twice is (2,0,1)
  // CHECK-LABEL: func.func @transpose_compose(
  // CHECK-NEXT:    %[[R:.*]] = ik.transpose %t {perm = array<i64: 2, 0, 1>} : (tensor<2x3x4xf32>) -> tensor<4x2x3xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<4x2x3xf32>
  func.func @transpose_compose(%t: tensor<2x3x4xf32>) -> tensor<4x2x3xf32> {
    %0 = ik.transpose %t {perm = array<i64: 1, 2, 0>} : (tensor<2x3x4xf32>) -> tensor<3x4x2xf32>
    %1 = ik.transpose %0 {perm = array<i64: 1, 2, 0>} : (tensor<3x4x2xf32>) -> tensor<4x2x3xf32>
    func.return %1 : tensor<4x2x3xf32>
  }

  // reshape(reshape(x)) -> one reshape
  // CHECK-LABEL: func.func @reshape_reshape(
  // CHECK-NEXT:    %[[R:.*]] = ik.reshape %x {shape = array<i64: 6, -1>} : (tensor<?x?xf32>) -> tensor<6x?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<6x?xf32>
  func.func @reshape_reshape(%x: tensor<?x?xf32>) -> tensor<6x?xf32> {
    %0 = ik.reshape %x {shape = array<i64: -1>} : (tensor<?x?xf32>) -> tensor<?xf32>
    %1 = ik.reshape %0 {shape = array<i64: 6, -1>} : (tensor<?xf32>) -> tensor<6x?xf32>
    func.return %1 : tensor<6x?xf32>
  }

  // a reshape back to x's own static shape -> x
  // CHECK-LABEL: func.func @reshape_to_same(
  // CHECK-NOT:     ik.reshape
  // CHECK:         func.return %s : tensor<2x6xf32>
  func.func @reshape_to_same(%s: tensor<2x6xf32>) -> tensor<2x6xf32> {
    %0 = ik.reshape %s {shape = array<i64: 3, 4>} : (tensor<2x6xf32>) -> tensor<3x4xf32>
    %1 = ik.reshape %0 {shape = array<i64: 2, 6>} : (tensor<3x4xf32>) -> tensor<2x6xf32>
    func.return %1 : tensor<2x6xf32>
  }

  // squeeze(expand_dims(v, 0), 0) -> v
  // CHECK-LABEL: func.func @squeeze_expand(
  // CHECK-NOT:     ik.expand_dims
  // CHECK-NOT:     ik.squeeze
  // CHECK:         func.return %v : tensor<?xf32>
  func.func @squeeze_expand(%v: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.expand_dims %v {axes = array<i64: 0>} : (tensor<?xf32>) -> tensor<1x?xf32>
    %1 = ik.squeeze %0 {axes = array<i64: 0>} : (tensor<1x?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // log(exp(x)) -> x
  // CHECK-LABEL: func.func @log_exp(
  // CHECK-NOT:     ik.exp
  // CHECK-NOT:     ik.log
  // CHECK:         func.return %x : tensor<?xf32>
  func.func @log_exp(%x: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.exp %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.log %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // where(c, x, x) -> x
  // CHECK-LABEL: func.func @where_same(
  // CHECK-NOT:     ik.where
  // CHECK:         func.return %x : tensor<?x?xf32>
  func.func @where_same(%c: tensor<?x?xi1>, %x: tensor<?x?xf32>) -> tensor<?x?xf32> {
    %0 = ik.where %c, %x, %x : (tensor<?x?xi1>, tensor<?x?xf32>, tensor<?x?xf32>) -> tensor<?x?xf32>
    func.return %0 : tensor<?x?xf32>
  }

  // relu(relu(x)) -> relu(x)
  // CHECK-LABEL: func.func @relu_relu(
  // CHECK-NEXT:    %[[R:.*]] = ik.relu %x : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @relu_relu(%x: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.relu %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.relu %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // abs(-x) -> abs(x)
  // CHECK-LABEL: func.func @abs_neg(
  // CHECK-NEXT:    %[[R:.*]] = ik.abs %x : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @abs_neg(%x: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.neg %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.abs %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // abs(abs(x)) -> abs(x)
  // CHECK-LABEL: func.func @abs_abs(
  // CHECK-NEXT:    %[[R:.*]] = ik.abs %x : (tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @abs_abs(%x: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.abs %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.abs %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // Rules apply to a fixed point: -(-(x * 1)) + 0 -> x
  // CHECK-LABEL: func.func @chain(
  // CHECK-NOT:     ik.
  // CHECK:         func.return %x : tensor<?xf32>
  func.func @chain(%x: tensor<?xf32>) -> tensor<?xf32> {
    %one = ik.constant dense<1.000000e+00> : tensor<f32>
    %zero = ik.constant dense<0.000000e+00> : tensor<f32>
    %0 = ik.mul %x, %one : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    %1 = ik.neg %0 : (tensor<?xf32>) -> tensor<?xf32>
    %2 = ik.neg %1 : (tensor<?xf32>) -> tensor<?xf32>
    %3 = ik.add %2, %zero : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    func.return %3 : tensor<?xf32>
  }

  // ---- identities that must not apply ----

  // x * 0 is NaN for x = NaN or inf: it stays
  // CHECK-LABEL: func.func @mul_zero_kept(
  // CHECK:         %[[Z:.*]] = ik.constant dense<0.000000e+00> : tensor<f32>
  // CHECK-NEXT:    %[[R:.*]] = ik.mul %x, %[[Z]] : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @mul_zero_kept(%x: tensor<?xf32>) -> tensor<?xf32> {
    %zero = ik.constant dense<0.000000e+00> : tensor<f32>
    %0 = ik.mul %x, %zero : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    func.return %0 : tensor<?xf32>
  }

  // 0 * x likewise
  // CHECK-LABEL: func.func @zero_mul_kept(
  // CHECK:         ik.mul %{{.*}}, %x
  // CHECK-NEXT:    func.return
  func.func @zero_mul_kept(%x: tensor<?xf32>) -> tensor<?xf32> {
    %zero = ik.constant dense<0.000000e+00> : tensor<f32>
    %0 = ik.mul %zero, %x : (tensor<f32>, tensor<?xf32>) -> tensor<?xf32>
    func.return %0 : tensor<?xf32>
  }

  // x - x is NaN for x = NaN or inf: it stays
  // CHECK-LABEL: func.func @sub_self_kept(
  // CHECK:         %[[R:.*]] = ik.sub %x, %x : (tensor<?xf32>, tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @sub_self_kept(%x: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.sub %x, %x : (tensor<?xf32>, tensor<?xf32>) -> tensor<?xf32>
    func.return %0 : tensor<?xf32>
  }

  // x / x is NaN for x = 0, NaN or inf: it stays
  // CHECK-LABEL: func.func @div_self_kept(
  // CHECK:         %[[R:.*]] = ik.truediv %x, %x : (tensor<?xf32>, tensor<?xf32>) -> tensor<?xf32>
  // CHECK-NEXT:    func.return %[[R]] : tensor<?xf32>
  func.func @div_self_kept(%x: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.truediv %x, %x : (tensor<?xf32>, tensor<?xf32>) -> tensor<?xf32>
    func.return %0 : tensor<?xf32>
  }

  // x + NaN is not x (a NaN constant is never "0")
  // CHECK-LABEL: func.func @add_nan_kept(
  // CHECK:         ik.add %x
  // CHECK-NEXT:    func.return
  func.func @add_nan_kept(%x: tensor<?xf32>) -> tensor<?xf32> {
    %nan = ik.constant dense<"0x0000C07F"> : tensor<f32>
    %0 = ik.add %x, %nan : (tensor<?xf32>, tensor<f32>) -> tensor<?xf32>
    func.return %0 : tensor<?xf32>
  }

  // x + 0 where 0 broadcasts x to a bigger shape: the shape would be lost, so it stays
  // CHECK-LABEL: func.func @add_zero_broadcast_kept(
  // CHECK:         ik.add %x, %{{.*}} : (tensor<3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
  // CHECK-NEXT:    func.return
  func.func @add_zero_broadcast_kept(%x: tensor<3xf32>) -> tensor<2x3xf32> {
    %zero = ik.constant dense<0.000000e+00> : tensor<2x3xf32>
    %0 = ik.add %x, %zero : (tensor<3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
    func.return %0 : tensor<2x3xf32>
  }

  // i + 0.0 promotes int32 to float64: the dtype change would be lost, so it stays
  // CHECK-LABEL: func.func @add_zero_promotes_kept(
  // CHECK:         ik.add %i, %{{.*}} : (tensor<?xi32>, tensor<f64>) -> tensor<?xf64>
  // CHECK-NEXT:    func.return
  func.func @add_zero_promotes_kept(%i: tensor<?xi32>) -> tensor<?xf64> {
    %zero = ik.constant dense<0.000000e+00> : tensor<f64>
    %0 = ik.add %i, %zero : (tensor<?xi32>, tensor<f64>) -> tensor<?xf64>
    func.return %0 : tensor<?xf64>
  }

  // squeeze of an expand_dims on other axes is not an identity
  // CHECK-LABEL: func.func @squeeze_expand_other_axis_kept(
  // CHECK:         ik.expand_dims %m {axes = array<i64: 0>}
  // CHECK-NEXT:    ik.squeeze %{{.*}} {axes = array<i64: 2>}
  func.func @squeeze_expand_other_axis_kept(%m: tensor<3x1xf32>) -> tensor<1x3xf32> {
    %0 = ik.expand_dims %m {axes = array<i64: 0>} : (tensor<3x1xf32>) -> tensor<1x3x1xf32>
    %1 = ik.squeeze %0 {axes = array<i64: 2>} : (tensor<1x3x1xf32>) -> tensor<1x3xf32>
    func.return %1 : tensor<1x3xf32>
  }

  // exp(log(x)) is not x (log of a negative is NaN): it stays
  // CHECK-LABEL: func.func @exp_log_kept(
  // CHECK:         %[[L:.*]] = ik.log %x
  // CHECK-NEXT:    %[[E:.*]] = ik.exp %[[L]]
  // CHECK-NEXT:    func.return %[[E]]
  func.func @exp_log_kept(%x: tensor<?xf32>) -> tensor<?xf32> {
    %0 = ik.log %x : (tensor<?xf32>) -> tensor<?xf32>
    %1 = ik.exp %0 : (tensor<?xf32>) -> tensor<?xf32>
    func.return %1 : tensor<?xf32>
  }

  // ---- upstream canonicalization patterns run too ----

  // CHECK-LABEL: func.func @upstream_addi_zero(
  // CHECK-NOT:     arith.addi
  // CHECK:         func.return %n : index
  func.func @upstream_addi_zero(%n: index) -> index {
    %c0 = arith.constant 0 : index
    %0 = arith.addi %n, %c0 : index
    func.return %0 : index
  }

  // ---- kept last: a lossy cast pair must not fold ----

  // cast(cast(x: i64, f64), i64) is NOT x: int64 -> float64 rounds above 2**53
  // (numpy.can_cast calls it "safe", but 2**53 + 1 comes back as 2**53).
  // CHECK-LABEL: func.func @cast_cast_i64_through_f64(
  // CHECK:         %[[A:.*]] = ik.cast %i : (tensor<?xi64>) -> tensor<?xf64>
  // CHECK-NEXT:    %[[B:.*]] = ik.cast %[[A]] : (tensor<?xf64>) -> tensor<?xi64>
  // CHECK-NEXT:    func.return %[[B]] : tensor<?xi64>
  func.func @cast_cast_i64_through_f64(%i: tensor<?xi64>) -> tensor<?xi64> {
    %0 = ik.cast %i : (tensor<?xi64>) -> tensor<?xf64>
    %1 = ik.cast %0 : (tensor<?xf64>) -> tensor<?xi64>
    func.return %1 : tensor<?xi64>
  }

  // An SGD step through an indexing: W - lr * scatter_inc(0, y, idx) is one increment of W's
  // rows (mul_scatter, then sub_scatter); a zero fill is left for dce.
  // CHECK-LABEL: func.func @sgd_rows(
  // CHECK:         %[[S:.*]] = ik.mul %lr, %y
  // CHECK:         %[[N:.*]] = ik.neg %[[S]]
  // CHECK:         %[[U:.*]] = ik.scatter %W, %[[N]], %idx {axes = array<i64: 0>, mode = "inc"}
  // CHECK-NEXT:    func.return %[[U]]
  func.func @sgd_rows(%W: tensor<?x?xf64>, %y: tensor<?x?xf64>, %idx: tensor<?xi64>) -> tensor<?x?xf64> {
    %lr = ik.constant dense<1.000000e-01> : tensor<f64>
    %z = ik.constant dense<0.000000e+00> : tensor<f64>
    %n = ik.dim %W : (tensor<?x?xf64>) -> tensor<i64>
    %m = ik.dim %W {axis = 1 : i64} : (tensor<?x?xf64>) -> tensor<i64>
    %zeros = ik.fill %z, %n, %m {shape = array<i64: -2, -2>} : (tensor<f64>, tensor<i64>, tensor<i64>) -> tensor<?x?xf64>
    %g = ik.scatter %zeros, %y, %idx {axes = array<i64: 0>, mode = "inc"} : (tensor<?x?xf64>, tensor<?x?xf64>, tensor<?xi64>) -> tensor<?x?xf64>
    %s = ik.mul %lr, %g : (tensor<f64>, tensor<?x?xf64>) -> tensor<?x?xf64>
    %u = ik.sub %W, %s : (tensor<?x?xf64>, tensor<?x?xf64>) -> tensor<?x?xf64>
    func.return %u : tensor<?x?xf64>
  }

  // A scatter that broadcasts into the sum is left alone: its axes count from its own rank,
  // so scattering into the (6, 5) side would index rows where it meant columns.
  // CHECK-LABEL: func.func @broadcast_scatter_stays(
  // CHECK:         %[[G:.*]] = ik.scatter %{{.*}}, %y, %idx {axes = array<i64: 0>, mode = "inc"} : (tensor<5xf64>, tensor<?xf64>, tensor<3xi64>) -> tensor<5xf64>
  // CHECK:         ik.add %A, %[[G]] : (tensor<6x5xf64>, tensor<5xf64>) -> tensor<6x5xf64>
  func.func @broadcast_scatter_stays(%A: tensor<6x5xf64>, %y: tensor<?xf64>) -> tensor<6x5xf64> {
    %idx = ik.constant dense<[0, 1, 1]> : tensor<3xi64>
    %z = ik.constant dense<0.000000e+00> : tensor<f64>
    %zeros = ik.fill %z {shape = array<i64: 5>} : (tensor<f64>) -> tensor<5xf64>
    %g = ik.scatter %zeros, %y, %idx {axes = array<i64: 0>, mode = "inc"} : (tensor<5xf64>, tensor<?xf64>, tensor<3xi64>) -> tensor<5xf64>
    %u = ik.add %A, %g : (tensor<6x5xf64>, tensor<5xf64>) -> tensor<6x5xf64>
    func.return %u : tensor<6x5xf64>
  }
}
