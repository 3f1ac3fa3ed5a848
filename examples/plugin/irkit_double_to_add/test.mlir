// RUN: irkit-opt %s -p double-to-add | filecheck %s

// CHECK-LABEL: func.func @twice
// CHECK-NOT:     ik.mul
// CHECK:         %[[S:.*]] = ik.add %x, %x : (tensor<?xf64>, tensor<?xf64>) -> tensor<?xf64>
// CHECK-NEXT:    func.return %[[S]]
func.func @twice(%x: tensor<?xf64>) -> tensor<?xf64> {
  %two = ik.constant dense<2.000000e+00> : tensor<f64>
  %y = ik.mul %x, %two : (tensor<?xf64>, tensor<f64>) -> tensor<?xf64>
  func.return %y : tensor<?xf64>
}

// A product that broadcasts keeps its multiply: x + x would have x's smaller type.
// CHECK-LABEL: func.func @broadcast
// CHECK:         ik.mul
func.func @broadcast(%x: tensor<f64>) -> tensor<3xf64> {
  %two = ik.constant dense<2.000000e+00> : tensor<3xf64>
  %y = ik.mul %x, %two : (tensor<f64>, tensor<3xf64>) -> tensor<3xf64>
  func.return %y : tensor<3xf64>
}
