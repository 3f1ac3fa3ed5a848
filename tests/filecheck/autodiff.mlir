// RUN: irkit-opt %s -p autodiff | filecheck %s
// RUN: irkit-opt %s -p autodiff,canonicalize,cse,dce | filecheck %s --check-prefix=CLEAN
// RUN: irkit-opt %s | irkit-opt | filecheck %s --check-prefix=ROUNDTRIP

// The derivative ops print, parse and print again unchanged.
// ROUNDTRIP-LABEL: func.func @grad_exp
// ROUNDTRIP:         ikad.grad of(%{{.*}} : tensor<f64>) wrt(%x : tensor<?xf64>) -> (tensor<?xf64>)
// ROUNDTRIP-LABEL: func.func @vjp_and_jvp
// ROUNDTRIP:         ikad.vjp of(%{{.*}} : tensor<?xf64>) by(%ct : tensor<?xf64>) wrt(%x : tensor<?xf64>) -> (tensor<?xf64>)
// ROUNDTRIP:         ikad.jvp of(%{{.*}} : tensor<?xf64>) wrt(%x : tensor<?xf64>) along(%t : tensor<?xf64>) -> (tensor<?xf64>)
// ROUNDTRIP-LABEL: func.func @stop
// ROUNDTRIP:         ikad.stop_gradient %{{.*}} : tensor<?xf64>

// d/dx sum(exp(x)) = exp(x) times the broadcast seed: no derivative op is left.
// CHECK-LABEL: func.func @grad_exp
// CHECK-NOT:     ikad.
// CHECK:         %[[E:.*]] = ik.exp %x
// CHECK:         ik.mul %{{.*}}, %[[E]]
// CHECK:         func.return
// CLEAN-LABEL: func.func @grad_exp
// CLEAN-NOT:     ikad.

builtin.module {
  func.func @grad_exp(%x: tensor<?xf64>) -> tensor<?xf64> {
    %0 = ik.exp %x : (tensor<?xf64>) -> tensor<?xf64>
    %1 = ik.sum %0 {axes = array<i64: 0>} : (tensor<?xf64>) -> tensor<f64>
    %2 = ikad.grad of(%1 : tensor<f64>) wrt(%x : tensor<?xf64>) -> (tensor<?xf64>)
    func.return %2 : tensor<?xf64>
  }

// vjp of sin is ct * cos(x); jvp of sin is t * cos(x).
// CHECK-LABEL: func.func @vjp_and_jvp
// CHECK-NOT:     ikad.vjp
// CHECK:         %[[C:.*]] = ik.cos %x
// CHECK:         ik.mul %ct, %[[C]]
// CHECK:         %[[C2:.*]] = ik.cos %x
// CHECK:         ik.mul %t, %[[C2]]
// CHECK-NOT:     ikad.jvp
// CLEAN-LABEL: func.func @vjp_and_jvp
// CLEAN:         %[[C:.*]] = ik.cos %x
// CLEAN-NOT:     ik.cos
// CLEAN:         ik.mul %ct, %[[C]]
// CLEAN:         ik.mul %t, %[[C]]
  func.func @vjp_and_jvp(%x: tensor<?xf64>, %ct: tensor<?xf64>, %t: tensor<?xf64>) -> (tensor<?xf64>, tensor<?xf64>) {
    %0 = ik.sin %x : (tensor<?xf64>) -> tensor<?xf64>
    %1 = ikad.vjp of(%0 : tensor<?xf64>) by(%ct : tensor<?xf64>) wrt(%x : tensor<?xf64>) -> (tensor<?xf64>)
    %2 = ikad.jvp of(%0 : tensor<?xf64>) wrt(%x : tensor<?xf64>) along(%t : tensor<?xf64>) -> (tensor<?xf64>)
    func.return %1, %2 : tensor<?xf64>, tensor<?xf64>
  }

// The gradient does not flow through stop_gradient: d/dx sum(x * stop(x)) = stop(x) = x.
// The stop_gradient op itself is removed.
// CHECK-LABEL: func.func @stop
// CHECK-NOT:     ikad.stop_gradient
// CHECK:         func.return
// CLEAN-LABEL: func.func @stop
// CLEAN-NOT:     ik.exp
  func.func @stop(%x: tensor<?xf64>) -> tensor<?xf64> {
    %0 = ikad.stop_gradient %x : tensor<?xf64>
    %1 = ik.mul %x, %0 : (tensor<?xf64>, tensor<?xf64>) -> tensor<?xf64>
    %2 = ik.sum %1 {axes = array<i64: 0>} : (tensor<?xf64>) -> tensor<f64>
    %3 = ikad.grad of(%2 : tensor<f64>) wrt(%x : tensor<?xf64>) -> (tensor<?xf64>)
    func.return %3 : tensor<?xf64>
  }

// Grad of grad: the inner grad is expanded first, then differentiated again.
// d/dx sum((d/dx sum(x*x*x))) = d/dx sum(3 x^2) = 6 x.
// CHECK-LABEL: func.func @grad_of_grad
// CHECK-NOT:     ikad.
// CHECK:         func.return
  func.func @grad_of_grad(%x: tensor<?xf64>) -> tensor<?xf64> {
    %0 = ik.mul %x, %x : (tensor<?xf64>, tensor<?xf64>) -> tensor<?xf64>
    %1 = ik.mul %0, %x : (tensor<?xf64>, tensor<?xf64>) -> tensor<?xf64>
    %2 = ik.sum %1 {axes = array<i64: 0>} : (tensor<?xf64>) -> tensor<f64>
    %3 = ikad.grad of(%2 : tensor<f64>) wrt(%x : tensor<?xf64>) -> (tensor<?xf64>)
    %4 = ik.sum %3 {axes = array<i64: 0>} : (tensor<?xf64>) -> tensor<f64>
    %5 = ikad.grad of(%4 : tensor<f64>) wrt(%x : tensor<?xf64>) -> (tensor<?xf64>)
    func.return %5 : tensor<?xf64>
  }

// A custom op whose rule no process registered is differentiated through its body,
// then inlined.
// CHECK-LABEL: func.func @custom_body
// CHECK-NOT:     ikad.
// CHECK:         ik.tanh %x
// CHECK:         func.return
  func.func @custom_body(%x: tensor<?xf64>) -> tensor<?xf64> {
    %0 = ikad.custom "mystery" (%x) : (tensor<?xf64>) -> tensor<?xf64> {
    ^bb0(%a: tensor<?xf64>):
      %b = ik.tanh %a : (tensor<?xf64>) -> tensor<?xf64>
      ikad.yield %b : tensor<?xf64>
    }
    %1 = ik.sum %0 {axes = array<i64: 0>} : (tensor<?xf64>) -> tensor<f64>
    %2 = ikad.grad of(%1 : tensor<f64>) wrt(%x : tensor<?xf64>) -> (tensor<?xf64>)
    func.return %2 : tensor<?xf64>
  }
}
