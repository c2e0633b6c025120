"""Tests for tf_fedscale.evaluation's metric picking and client sampling."""

import math

from absl.testing import absltest

from tf_fedscale import evaluation


class TrainMetricsTest(absltest.TestCase):

  def test_accuracy_named_metric_wins(self):
    metrics = {'client_work': {'train': {
        'loss': 1.5, 'num_examples': 10, 'recall_at_5': 0.3, 'sparse_accuracy': 0.7}}}
    self.assertEqual(evaluation.train_metrics(metrics),
                     {'train_loss': 1.5, 'train_accuracy': 0.7})

  def test_headline_metric_without_accuracy_in_its_name(self):
    metrics = {'client_work': {'train': {
        'loss': 2.0, 'num_examples': 10, 'num_batches': 2, 'recall_at_5': 0.3}}}
    self.assertEqual(evaluation.train_metrics(metrics)['train_accuracy'], 0.3)

  def test_no_metric_is_nan(self):
    metrics = {'client_work': {'train': {'loss': 2.0, 'num_examples': 10}}}
    self.assertTrue(math.isnan(evaluation.train_metrics(metrics)['train_accuracy']))
    self.assertTrue(math.isnan(evaluation.train_metrics({})['train_loss']))


class ChooseEvalClientsTest(absltest.TestCase):

  def test_all_or_a_seeded_sorted_sample(self):
    ids = [f'c{i}' for i in range(100)]
    self.assertEqual(evaluation.choose_eval_clients(ids, 0, seed=1), ids)
    sample = evaluation.choose_eval_clients(ids, 10, seed=1)
    self.assertLen(set(sample), 10)
    self.assertEqual(sample, [c for c in ids if c in sample])
    self.assertEqual(sample, evaluation.choose_eval_clients(ids, 10, seed=1))
    self.assertNotEqual(sample, evaluation.choose_eval_clients(ids, 10, seed=2))


if __name__ == '__main__':
  absltest.main()
