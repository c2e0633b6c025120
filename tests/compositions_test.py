"""Tests for tf_fedscale.engine.compositions: composed processes remember their parts."""

from absl.testing import absltest
import tensorflow_federated as tff

from tests import cases
from tf_fedscale.engine import compositions


class CompositionsTest(absltest.TestCase):

  def test_parts_of_a_composed_next(self):
    process = tff.learning.algorithms.build_weighted_fed_avg(
        cases.TINY_TASK.model_fn(),
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1))
    data = cases.TINY_TASK.train_data.preprocess(lambda d: d.batch(10))
    composed = compositions.compose(data.dataset_computation, process)
    self.assertIsInstance(composed, tff.learning.templates.LearningProcess)
    parts = compositions.parts_of(composed.next)
    self.assertIs(parts.next, process.next)
    self.assertIs(parts.dataset_computation, data.dataset_computation)
    self.assertIsNone(compositions.parts_of(process.next))


if __name__ == '__main__':
  absltest.main()
