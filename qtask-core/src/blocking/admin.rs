//! The operators' calls of [`crate::admin`], waited on.

use super::{wait, Client};
use crate::admin::{BulkBatch, QueueSummary, RatePoint, TaskFilter, TaskPage};
use crate::error::Result;
use crate::store::QueueLimits;

impl Client {
    pub fn list_tasks(&self, filter: &TaskFilter, before_id: Option<i64>, limit: u32) -> Result<TaskPage> {
        let (c, filter) = (self.live()?.clone(), filter.clone());
        wait(async move { c.list_tasks(&filter, before_id, limit).await })
    }

    pub fn count_tasks(&self, filter: &TaskFilter) -> Result<i64> {
        let (c, filter) = (self.live()?.clone(), filter.clone());
        wait(async move { c.count_tasks(&filter).await })
    }

    pub fn retry(&self, task_id: i64) -> Result<()> {
        let c = self.live()?.clone();
        wait(async move { c.retry(task_id).await })
    }

    pub fn retry_batch(&self, filter: &TaskFilter, after_id: i64) -> Result<BulkBatch> {
        let (c, filter) = (self.live()?.clone(), filter.clone());
        wait(async move { c.retry_batch(&filter, after_id).await })
    }

    pub fn retry_matching(&self, filter: &TaskFilter) -> Result<u64> {
        let (c, filter) = (self.live()?.clone(), filter.clone());
        wait(async move { c.retry_matching(&filter).await })
    }

    pub fn cancel_batch(&self, filter: &TaskFilter, after_id: i64) -> Result<BulkBatch> {
        let (c, filter) = (self.live()?.clone(), filter.clone());
        wait(async move { c.cancel_batch(&filter, after_id).await })
    }

    pub fn cancel_matching(&self, filter: &TaskFilter) -> Result<u64> {
        let (c, filter) = (self.live()?.clone(), filter.clone());
        wait(async move { c.cancel_matching(&filter).await })
    }

    pub fn pause_queue(&self, queue: &str) -> Result<()> {
        let (c, queue) = (self.live()?.clone(), queue.to_owned());
        wait(async move { c.pause_queue(&queue).await })
    }

    pub fn resume_queue(&self, queue: &str) -> Result<()> {
        let (c, queue) = (self.live()?.clone(), queue.to_owned());
        wait(async move { c.resume_queue(&queue).await })
    }

    pub fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        let (c, queue) = (self.live()?.clone(), queue.to_owned());
        wait(async move { c.set_queue_limits(&queue, limits).await })
    }

    pub fn queues(&self) -> Result<Vec<QueueSummary>> {
        let c = self.live()?.clone();
        wait(async move { c.queues().await })
    }

    pub fn rates(&self, minutes: u32) -> Result<Vec<RatePoint>> {
        let c = self.live()?.clone();
        wait(async move { c.rates(minutes).await })
    }
}
